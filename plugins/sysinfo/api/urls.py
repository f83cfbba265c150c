from django.urls import path

from plugins.sysinfo.api.views import SysinfoView

urlpatterns = [path("", SysinfoView.as_view(), name="sysinfo")]
