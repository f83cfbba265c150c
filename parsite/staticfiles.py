"""Where the collector's static files come from: collected, hashed and compressed, or the apps' own."""

from __future__ import annotations

from django.conf import settings
from django.contrib.staticfiles.storage import StaticFilesStorage
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.storage import CompressedManifestStaticFilesStorage


class CollectorStaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise on a collector; on a node every path, its docs' files too, stays behind the ACL."""

    def __call__(self, request):
        if settings.PAR_ROLE != "collector":
            return self.get_response(request)
        return super().__call__(request)


class CollectedStaticFiles(CompressedManifestStaticFilesStorage):
    """Content-hashed, compressed files once ``collectstatic`` ran; the plain names before it.

    Without a manifest, Django's manifest storage refuses every ``{% static %}`` (the admin
    would be a 500); here a fresh install names the apps' own files, which WhiteNoise then
    finds in the apps' folders (``WHITENOISE_USE_FINDERS``).
    """

    def url(self, name, force=False):
        if not self.hashed_files:
            return StaticFilesStorage.url(self, name)
        return super().url(name, force)
