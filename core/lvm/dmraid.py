"""dm-raid metadata for the ``_rmeta_K`` sub-LVs of a raid1 LV.

Without it (a zeroed rmeta) the kernel's dm-raid treats the LV as a brand-new
array: fine while every leg is present, but with a leg missing it refuses to
assemble ("Invalid superblocks").  So the engine writes, into every rmeta, the
superblock and the md write-intent bitmap that dm-raid itself writes once an
array is in sync.  Layout (little-endian; verified byte for byte against what
the Debian 6.1 kernel wrote into our rmeta LVs after a real activation, see
tests/test_lvm_dmraid.py):

rmeta + 0 (dm-raid superblock, rest of the 4 KiB zero)
    0 magic "DmRd" (0x64526D44)   4 compat_features (1 = v1.9.0 fields)
    8 num_devices                 12 array_position
   16 events u64                  24 failed_devices u64
   32 disk_recovery_offset u64 (MaxSector = in sync)
   40 array_resync_offset u64 (MaxSector = in sync)
   48 level  52 layout  56 stripe_sectors  60 flags
   64 reshape_position u64 (MaxSector)  72 new_level 76 new_layout
   80 new_stripe_sectors 84 delta_disks 88 array_sectors u64
   96 data_offset u64 104 new_data_offset u64 112 sectors u64
  120 extended_failed_devices[3] u64  144 incompat_features
rmeta + 4096 (md bitmap superblock, 256 bytes, then the bits)
    0 magic "bitm" (0x6d746962)  4 version (4)  8 uuid[16] (0 for dm-raid)
   24 events u64  32 events_cleared u64  40 sync_size u64 (sectors)
   48 state  52 chunksize (bytes = region size)  56 daemon_sleep (s)
   60 write_behind  64 sectors_reserved  68 nodes  72 cluster_name[64]
  then one bit per region (0 = clean), the rest of the sector set to 1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import MetadataError

DM_RAID_MAGIC = 0x64526D44
BITMAP_MAGIC = 0x6D746962
FEATURE_V190 = 0x1
MAX_SECTOR = (1 << 64) - 1
BITMAP_OFFSET = 4096
SB_FMT = "<IIIIQQQQIIIIQIIIIQQQQ3QI"


@dataclass
class DmRaidSuperblock:
    num_devices: int
    array_position: int
    events: int = 1
    level: int = 1
    sectors: int = 0                  # per-leg data size, sectors
    array_sectors: int = 0
    failed_devices: int = 0
    disk_recovery_offset: int = MAX_SECTOR
    array_resync_offset: int = MAX_SECTOR
    compat_features: int = FEATURE_V190
    layout: int = 0
    stripe_sectors: int = 0
    flags: int = 0
    reshape_position: int = MAX_SECTOR

    def pack(self) -> bytes:
        body = struct.pack(SB_FMT, DM_RAID_MAGIC, self.compat_features, self.num_devices, self.array_position,
                           self.events, self.failed_devices, self.disk_recovery_offset, self.array_resync_offset,
                           self.level, self.layout, self.stripe_sectors, self.flags, self.reshape_position,
                           self.level, self.layout, self.stripe_sectors, 0, self.array_sectors, 0, 0,
                           self.sectors, 0, 0, 0, 0)
        return body + bytes(512 - len(body))

    @classmethod
    def parse(cls, data: bytes, where: str = "rmeta") -> "DmRaidSuperblock":
        if len(data) < struct.calcsize(SB_FMT):
            raise MetadataError(f"{where}: dm-raid superblock truncated")
        f = struct.unpack_from(SB_FMT, data)
        if f[0] != DM_RAID_MAGIC:
            raise MetadataError(f"{where}: no dm-raid superblock (magic 0x{f[0]:08x})")
        return cls(num_devices=f[2], array_position=f[3], events=f[4], failed_devices=f[5],
                   disk_recovery_offset=f[6], array_resync_offset=f[7], level=f[8], layout=f[9],
                   stripe_sectors=f[10], flags=f[11], reshape_position=f[12], array_sectors=f[17],
                   sectors=f[20], compat_features=f[1])


@dataclass
class BitmapSuperblock:
    sync_size: int                    # sectors
    chunksize: int                    # bytes (the raid region size)
    events: int = 1
    events_cleared: int = 1
    version: int = 4
    daemon_sleep: int = 5
    state: int = 0

    def pack(self) -> bytes:
        body = struct.pack("<II16sQQQIIIIII", BITMAP_MAGIC, self.version, bytes(16), self.events,
                           self.events_cleared, self.sync_size, self.state, self.chunksize,
                           self.daemon_sleep, 0, 0, 0)
        return body + bytes(256 - len(body))

    @classmethod
    def parse(cls, data: bytes, where: str = "rmeta") -> "BitmapSuperblock":
        f = struct.unpack_from("<II16sQQQIIIIII", data)
        if f[0] != BITMAP_MAGIC:
            raise MetadataError(f"{where}: no md bitmap superblock")
        return cls(sync_size=f[5], chunksize=f[7], events=f[3], events_cleared=f[4], version=f[1],
                   daemon_sleep=f[8], state=f[6])


def clean_bits(chunks: int) -> bytes:
    """The bitmap after a full sync: ``chunks`` zero bits, the rest of the sector ones."""
    nbytes = -(-(256 + -(-chunks // 8)) // 512) * 512 - 256
    bits = bytearray(b"\xff" * nbytes)
    for i in range(chunks):
        bits[i // 8] &= ~(1 << (i % 8)) & 0xFF
    return bytes(bits)


def rmeta_image(num_devices: int, position: int, leg_sectors: int, region_sectors: int,
                events: int = 1) -> bytes:
    """The first bytes of ``_rmeta_K`` for an in-sync raid1 leg (write over a zeroed rmeta)."""
    sb = DmRaidSuperblock(num_devices=num_devices, array_position=position, events=events,
                          sectors=leg_sectors, array_sectors=leg_sectors)
    chunks = -(-leg_sectors // region_sectors)
    bm = BitmapSuperblock(sync_size=leg_sectors, chunksize=region_sectors * 512, events=events)
    out = bytearray(BITMAP_OFFSET)
    out[0:512] = sb.pack()
    return bytes(out) + bm.pack() + clean_bits(chunks)
