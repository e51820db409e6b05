from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from portal import views

# The admin has no login of its own: it uses ours, and the second-factor gate covers it.
admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = "Lightbox administration"

urlpatterns = [
    path("", include("imaging.urls")),
    path("", include("audit.urls")),
    path("", include("consent.urls")),
    path("", include("exports.urls")),
    path("", include("flags.urls")),
    path("", include("notices.urls")),
    path("", include("sharing.urls")),
    path("", include("proxies.urls")),
    path("start/", views.start, name="portal-start"),
    path("api/v1/openapi.json", views.openapi_json, name="portal-openapi"),
    path("healthz", views.healthz, name="portal-healthz"),
    path(".well-known/lightbox-signing-key.pem", views.signing_key, name="portal-signing-key"),
    path("", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path(
        "account/passkeys/jsi18n/",
        views.public(JavaScriptCatalog.as_view(packages=["django_otp_webauthn"])),
        name="portal-webauthn-jsi18n",
    ),
    path("admin/", admin.site.urls),
]

handler400 = "portal.views.bad_request"
handler403 = "portal.views.permission_denied"
handler404 = "portal.views.page_not_found"
# Django has no 429 handler of its own: allauth's rate limits (and the second-factor views, through
# allauth's respond_429) render this one, found as ROOT_URLCONF.handler429.
handler429 = "portal.views.too_many_requests"
handler500 = "portal.views.server_error"
