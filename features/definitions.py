"""Every Feast object of the repository, for ``store.apply`` and the generated repo's shim."""

from features.data_sources import SOURCES
from features.entities import ENTITIES
from features.feature_services import FEATURE_SERVICES
from features.feature_views import FEATURE_VIEWS

ALL_OBJECTS = [*ENTITIES, *SOURCES, *FEATURE_VIEWS, *FEATURE_SERVICES]
