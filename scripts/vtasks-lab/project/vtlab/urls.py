"""The embedded mode's web side: one health path, as GlitchTip's /_health/."""

from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("_health/", lambda request: HttpResponse("ok", content_type="text/plain"))]
