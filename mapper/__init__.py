"""mapper: resumable batch jobs over Cloud Datastore, chained through Cloud Tasks.

What a user needs, in one import: ``from mapper import Mapper, Runtime, ...``.
"""

from mapper._version import __version__
from mapper.base import Mapper
from mapper.cleanup.table import apply as apply_cleanup
from mapper.cleanup.table import plan as plan_cleanup
from mapper.cli.progress import Progress
from mapper.engine.jobs import Job
from mapper.engine.records import JobStatus
from mapper.engine.runtime import Runtime, runtime_from_env
from mapper.engine.status import JobInfo, ShardInfo
from mapper.errors import MapperError
from mapper.settings import Settings
from mapper.transfer.export import Export, ExportInfo, ExportSpec, start_export
from mapper.transfer.importer import ImportInfo, ImportRun, ImportSpec, start_import
from mapper.transfer.options import RemapOptions, parse_options
from mapper.transfer.remap_plan import summarize as summarize_remap

__all__ = [
    "__version__",
    "Export",
    "ExportInfo",
    "ExportSpec",
    "ImportInfo",
    "ImportRun",
    "ImportSpec",
    "Job",
    "JobInfo",
    "JobStatus",
    "Mapper",
    "MapperError",
    "Progress",
    "RemapOptions",
    "Runtime",
    "Settings",
    "ShardInfo",
    "apply_cleanup",
    "parse_options",
    "plan_cleanup",
    "runtime_from_env",
    "start_export",
    "start_import",
    "summarize_remap",
]
