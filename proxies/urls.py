from __future__ import annotations

from django.urls import path

from proxies import views

urlpatterns = [
    path("proxy/signup/", views.signup, name="proxies-signup"),
    path("proxy/code/", views.redeem, name="proxies-redeem"),
    path("proxy/switch/", views.switch, name="proxies-switch"),
    path("people/", views.people, name="proxies-people"),
    path("people/invite/", views.invite, name="proxies-invite"),
    path("people/<int:grant_id>/end/", views.end, name="proxies-end"),
    path("people/<int:grant_id>/agree/", views.agree, name="proxies-agree"),
]
