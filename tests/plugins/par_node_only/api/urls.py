from django.http import JsonResponse
from django.urls import path

urlpatterns = [path("here", lambda request: JsonResponse({"role": "node"}), name="here")]
