"""mapper: resumable batch jobs over Cloud Datastore, chained through Cloud Tasks."""

from mapper.base import Mapper
from mapper.engine.jobs import Job
from mapper.engine.records import JobStatus
from mapper.errors import MapperError
from mapper.settings import Settings

__all__ = ["Job", "JobStatus", "Mapper", "MapperError", "Settings"]
