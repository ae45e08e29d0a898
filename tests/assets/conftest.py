from tests.assets.analytics_fixtures import analytics_any_url, analytics_url  # noqa: F401
