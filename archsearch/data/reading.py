"""Bounded reads of the files a dataset is made of.

A data folder, an archive or a cache entry is data someone handed us, and it can be hostile
or broken: a FIFO named like an image, a sparse 3 GB `big.jpg`, a 2 MB `.tar.gz` whose
member inflates to 2 GB, a PNG that declares 60,000 x 60,000 pixels. The data layer reads
every such file through here, so each costs bounded memory and none blocks:
- regular files only (a FIFO would block the read forever, a device never end):
  `archsearch._io.read_bytes` for whole files, `_io.open_regular` for archives read in place;
- sizes checked before reading: a file's `stat`, a tar member's header size (and then the
  bytes actually read, so a header that lies cannot pass either);
- images decoded only when their header declares at most `MAX_IMAGE_PIXELS` (PIL's own
  decompression-bomb limit, set here to that value; its warning becomes a refusal too).

The limits, module constants (read at each use: `archsearch.data.reading.MAX_IMAGE_BYTES =
...` changes them for the process and the decoding workers it starts):
- `MAX_IMAGE_BYTES` = 64 MiB: one encoded image file or tar member, far above a
  photograph's JPEG (a CIFAR one is about 1 KB).
- `MAX_PICKLE_BYTES` = 512 MiB: one CIFAR pickle, as a file or a tar member (CIFAR-100's
  `train` is the largest real one, 155 MB).
- `MAX_IMAGE_PIXELS` = 2**26 (67,108,864 pixels, 192 MiB decoded as RGB): one image. The
  networks here see at most 1024 px a side; an image beyond this is to be downscaled first.
- `MAX_CIFAR_IMAGE_BYTES` = 1 MiB: one CIFAR image file or tar member (a 32x32 PNG or JPEG is
  1 to 4 KB; CIFAR's 60,000 are all kept until they are decoded together).
- `MAX_TAR_HEADER_BYTES` = 1 MiB: the headers in front of one tar member, read before its
  size can be checked, together: its 512-byte header blocks and any GNU long-name and
  long-link, pax, pax global or Solaris extended headers (a long path, a link target, a few
  attributes: a few KB in real archives); and all the pax global headers of one archive,
  together (they apply to every member after them). At most `MAX_TAR_HEADERS_IN_A_ROW` = 16
  extended headers in front of one member (real archives: at most 4). Every tar the data
  layer reads is opened by `open_tar`, which refuses a header past these before reading it
  (Python's `tarfile` reads an extended header whole, of whatever size it declares) and
  keeps no list of the members already passed (`TarFile.members` would hold every one).
A refused file is one `ArchsearchError` line that names it and says which limit it passed.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import warnings
from contextlib import contextmanager
from typing import Iterator

from PIL import Image

from .._io import MiB, open_regular, too_large
from ..errors import ArchsearchError

MAX_IMAGE_BYTES = 64 * MiB
MAX_PICKLE_BYTES = 512 * MiB
MAX_IMAGE_PIXELS = 1 << 26
MAX_CIFAR_IMAGE_BYTES = 1 * MiB
MAX_TAR_HEADER_BYTES = 1 * MiB
MAX_TAR_HEADERS_IN_A_ROW = 16


def read_member(tf: tarfile.TarFile, m: tarfile.TarInfo, what: str, archive: str | os.PathLike, limit: int) -> bytes:
    """A tar member's bytes, at most `limit`: refused by its header's size before reading, and
    by the bytes actually read (never more than the header's size + 1 of them)."""
    if m.size > limit:
        raise too_large(what, f"{m.name} in {archive}", m.size, limit)
    f = tf.extractfile(m)
    if f is None:
        raise ArchsearchError(f"cannot read {what} {m.name} in {archive}: not a regular file in the archive")
    # one byte past the header's size: a read of n bytes allocates n at once (64 MiB per
    # 1 KB CIFAR image would cost seconds), and a longer member than its header says is refused
    data = f.read(m.size + 1)
    if len(data) > m.size:
        raise ArchsearchError(f"cannot read {what} {m.name} in {archive}: more bytes than its header's {m.size:,}")
    return data


class TarHeaderRefused(tarfile.ReadError):
    """A tar member's headers past MAX_TAR_HEADER_BYTES (or MAX_TAR_HEADERS_IN_A_ROW), refused
    before they are read."""


_EXTENDED = {tarfile.GNUTYPE_LONGNAME: "GNU long-name", tarfile.GNUTYPE_LONGLINK: "GNU long-link",
             tarfile.XHDTYPE: "pax", tarfile.XGLTYPE: "pax global", tarfile.SOLARIS_XHDTYPE: "Solaris extended"}
_GNU_SPARSE = tarfile.GNUTYPE_SPARSE  # its map may run on in 512-byte extension blocks


class _BoundedTarInfo(tarfile.TarInfo):
    """A member header that checks an extended header's declared size before `tarfile` reads
    it; `tarfile` calls `_proc_member` for each header it has read, `tf` a `_BoundedTarFile`."""

    def _proc_member(self, tf):
        kind = _EXTENDED.get(self.type)
        if kind is None and self.type != _GNU_SPARSE:
            tf.members.clear()  # the members passed (see _BoundedTarFile)
            return super()._proc_member(tf)  # a plain member: nothing is read past its 512 bytes
        if isinstance(tf.fileobj, _HeaderReads):  # a header after another: the first one's budget
            if kind is not None:
                tf._extended(self, kind)
            return super()._proc_member(tf)
        # the first of a member's extended headers: what `tarfile` reads from here until that
        # member's own header has been read is counted and capped
        tf._header_left = MAX_TAR_HEADER_BYTES - tarfile.BLOCKSIZE
        tf._in_row, tf._member_at = 0, self.offset
        f = tf.fileobj
        tf.fileobj = _HeaderReads(f, tf)
        try:
            if kind is not None:
                tf._extended(self, kind)
            return super()._proc_member(tf)
        finally:
            tf.fileobj = f


class _HeaderReads:
    """The archive's file object while `tarfile` reads the extended headers of one member: a
    read past what is left of MAX_TAR_HEADER_BYTES is refused before it is made (the backstop
    for what `_extended` does not name: GNU sparse maps in extension blocks or in the data)."""

    def __init__(self, f, tf: "_BoundedTarFile"):
        self._f, self._tf = f, tf

    def read(self, n: int = -1) -> bytes:
        tf = self._tf
        if n is None or n < 0 or n > tf._header_left:
            raise TarHeaderRefused(f"the headers of the member at byte {tf._member_at:,}: more than the "
                                   f"{MAX_TAR_HEADER_BYTES:,} bytes allowed for the headers of one member")
        tf._header_left -= n
        return self._f.read(n)

    def __getattr__(self, name):
        return getattr(self._f, name)


class _BoundedTarFile(tarfile.TarFile):
    """`TarFile` under MAX_TAR_HEADER_BYTES and MAX_TAR_HEADERS_IN_A_ROW. It keeps no list of
    the members it has passed (`members` holds the last one at most): iteration and
    `extractfile(member)` need none of them, and an archive of a million members (or of a
    million copies of a pax global header) would keep them all."""

    tarinfo = _BoundedTarInfo
    _globals_left: int | None = None

    def _extended(self, h: tarfile.TarInfo, kind: str) -> None:
        self._in_row += 1
        if self._in_row > MAX_TAR_HEADERS_IN_A_ROW:
            raise TarHeaderRefused(f"more than {MAX_TAR_HEADERS_IN_A_ROW} extended headers in a row at byte "
                                   f"{self._member_at:,}")
        need = h._block(h.size)
        if need > self._header_left:  # with the headers before it, where there are any
            raise TarHeaderRefused(f"a {kind} header of {h.size:,} bytes at byte {h.offset:,}: more than the "
                                   f"{MAX_TAR_HEADER_BYTES:,} bytes allowed for the headers of one member")
        if h.type == tarfile.XGLTYPE:
            if self._globals_left is None:
                self._globals_left = MAX_TAR_HEADER_BYTES
            self._globals_left -= need
            if self._globals_left < 0:
                raise TarHeaderRefused(f"pax global headers of more than {MAX_TAR_HEADER_BYTES:,} bytes in all "
                                       f"(the one at byte {h.offset:,} passes it)")


@contextmanager
def open_tar(path: str | os.PathLike, what: str = "archive", mode: str = "r|*") -> Iterator[tarfile.TarFile]:
    """A tar archive opened for reading under the header limits above (MAX_TAR_HEADER_BYTES):
    `mode` "r|*" for one pass front to back (any compression; seeking back into a gzip stream
    would inflate it again), "r:" for an uncompressed tar read at random. Refusals and damage
    raise `tarfile.TarError`s (`TarHeaderRefused` for a header refused by its size), which
    callers turn into one line naming the archive. Its file is a regular one (`open_regular`)."""
    with open_regular(path, what) as raw, _BoundedTarFile.open(fileobj=raw, mode=mode) as tf:
        yield tf


def header_size(blob: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's or PNG's header, without decoding (a few microseconds:
    Pillow's `Image.open` costs 20 µs, a second for CIFAR's 60,000); None for another format
    or a header this walk does not follow."""
    if blob[:8] == b"\x89PNG\r\n\x1a\n" and blob[12:16] == b"IHDR" and len(blob) >= 24:
        w, h = struct.unpack_from(">II", blob, 16)
        return w, h
    if blob[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(blob)
    while i + 9 <= n and blob[i] == 0xFF:  # marker segments up to the frame header (SOFn)
        mk = blob[i + 1]
        if mk == 0xFF:  # a fill byte
            i += 1
        elif 0xC0 <= mk <= 0xCF and mk not in (0xC4, 0xC8, 0xCC):  # SOFn: precision, height, width
            h, w = struct.unpack_from(">HH", blob, i + 5)
            return w, h
        elif mk == 0x01 or 0xD0 <= mk <= 0xD7:  # TEM, RSTn: no length field
            i += 2
        else:
            i += 2 + ((blob[i + 2] << 8) | blob[i + 3])
    return None


class ImageRefused(ValueError):
    """An image refused before decoding: more pixels than MAX_IMAGE_PIXELS."""


def open_image(blob: bytes):
    """`PIL.Image.open` of encoded bytes (the header only; pixels are decoded later) under
    our pixel limit: a decompression bomb raises `ImageRefused`, never a warning or an
    allocation. Other failures raise what Pillow raises (OSError, ValueError, ...)."""
    # Pillow's limit, deliberately ours for this open (its default: a warning above 89.5M
    # pixels, an error above twice that); put back after, for other users of Pillow
    pillows = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(blob))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageRefused(f"more than the {MAX_IMAGE_PIXELS:,} pixels allowed "
                           "(a decompression bomb, or an image to downscale first)") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillows


def image_pixels(blob: bytes) -> tuple[int, int]:
    """(width, height) as the header declares them: the fast walk, else Pillow's (checked) header read."""
    size = header_size(blob)
    if size is not None:
        return size
    with open_image(blob) as im:
        return im.size


__all__ = ["MAX_IMAGE_BYTES", "MAX_PICKLE_BYTES", "MAX_IMAGE_PIXELS", "MAX_CIFAR_IMAGE_BYTES", "MAX_TAR_HEADER_BYTES",
           "MAX_TAR_HEADERS_IN_A_ROW", "open_tar", "TarHeaderRefused", "read_member",
           "header_size", "open_image", "image_pixels", "ImageRefused"]
