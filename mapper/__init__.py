"""mapper: resumable batch jobs over Cloud Datastore, chained through Cloud Tasks."""

from mapper.base import Mapper
from mapper.errors import MapperError
from mapper.jobs import Job
from mapper.settings import Settings
from mapper.state import JobStatus

__all__ = ["Job", "JobStatus", "Mapper", "MapperError", "Settings"]
