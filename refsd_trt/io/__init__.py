"""Input/output layer: read and refuse inputs, strip metadata, write atomically, keep the manifest.

Public API (the CLI and the Python API use only these names):

- ``read_image(path, limits) -> LoadedImage``; bad inputs raise ``InputError`` (one line, a kind)
- ``write_image(tensor, path, quality, exif=None)``: no metadata (or only what a policy keeps), atomic
- ``MetadataPolicy.parse("time,gps")``: ``exif_from(source)``, ``note_for(output)``, ``to_dict()``
- ``discover_inputs(args, recursive, exclude) -> Discovery``; ``output_path``, ``assign_outputs``
- ``iter_video_frames(path) -> VideoFrames``; ``VideoWriter(path, fps, size)``
- ``Manifest(path)``: the published manifest (relative names, no input hashes): ``append``, ``records``
- ``ResumeState(path)``: the private resume state: ``append``, ``records``, ``done_inputs``
- ``clean_stale_temps(out_dir)``: remove temporaries left by killed runs
- ``metadata_report(path)``: what metadata a file carries (for tests and audits)
"""

from refsd_trt.io.atomic import AtomicOutput, clean_stale_temps
from refsd_trt.io.discover import Discovery, InputItem, assign_outputs, discover_inputs, output_path
from refsd_trt.io.errors import InputError, InputErrorKind, OutputError
from refsd_trt.io.formats import MediaKind
from refsd_trt.io.hashing import sha256_file
from refsd_trt.io.image_read import LoadedImage, ReadLimits, read_image
from refsd_trt.io.image_write import write_image
from refsd_trt.io.manifest import Manifest, ManifestWarning, ResumeState, default_state_path
from refsd_trt.io.metadata import MetadataReport, metadata_report
from refsd_trt.io.metadata_policy import METADATA_GROUPS, MetadataPolicy, kept_exif
from refsd_trt.io.video import VideoFrames, VideoInfo, VideoWriter, iter_video_frames

__all__ = [
    "METADATA_GROUPS",
    "AtomicOutput",
    "Discovery",
    "InputError",
    "InputErrorKind",
    "InputItem",
    "LoadedImage",
    "Manifest",
    "ManifestWarning",
    "MediaKind",
    "MetadataPolicy",
    "MetadataReport",
    "OutputError",
    "ReadLimits",
    "ResumeState",
    "VideoFrames",
    "VideoInfo",
    "VideoWriter",
    "assign_outputs",
    "clean_stale_temps",
    "default_state_path",
    "discover_inputs",
    "iter_video_frames",
    "kept_exif",
    "metadata_report",
    "output_path",
    "read_image",
    "sha256_file",
    "write_image",
]
