"""Embedded mode: the worker and scheduler inside the ASGI server (lifespan on), as
GlitchTip 6's all-in-one role runs them."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vtlab.settings")
django_app = get_asgi_application()

from django_vtasks.asgi import get_worker_application  # noqa: E402  (needs Django set up)

application = get_worker_application(django_app)
