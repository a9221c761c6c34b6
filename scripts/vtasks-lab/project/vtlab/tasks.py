"""Stand-ins for GlitchTip 6's periodic tasks: they only have to exist and run."""

from django_vtasks import task


@task
def dispatch_checks():
    """apps.uptime.tasks.dispatch_checks (every second)."""


@task
def process_event_alerts():
    """apps.alerts.tasks.process_event_alerts (every 60 s)."""


@task
def perform_maintenance():
    """glitchtip.tasks.perform_maintenance (daily, 05:00)."""
