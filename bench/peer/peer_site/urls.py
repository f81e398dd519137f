"""The login wizard (two_factor's URLs) and one page behind it."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import include, path
from django_otp.decorators import otp_required
from two_factor.urls import urlpatterns as tf_urls


@otp_required
@login_required
def home(request):
    return render(request, "home.html")


urlpatterns = [
    path("", include(tf_urls)),
    path("home/", home, name="home"),
]
