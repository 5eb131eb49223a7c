"""The maintenance flows and the generic way each one runs.

Every flow walks the same building blocks: choose (target disks with their
safety status, BOS/OPPs from the TOC), review a plan, confirm destructive
steps by typing the target's ID, run the engine in a thread worker with a
progress bar and a live log (Escape asks, then cancels at a safe point),
then a result screen.  An engine failure becomes the error screen.

The engine functions are looked up when a flow starts (``Engine``), so a
build without one (e.g. no ``core.recover`` yet) shows "not available in
this build" instead of failing or pretending.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from core.units import human

from .error import NotAvailableError

# -- engine lookup ------------------------------------------------------------------


def engine(path: str) -> tuple[Any | None, str]:
    """``"core.bootcopy:verify"`` -> (callable or None, why it is missing)."""
    module, _, name = path.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        return None, f"{module} is not part of this build ({e})"
    except Exception as e:  # a module that fails to load is not available either
        return None, f"{module} could not be loaded ({type(e).__name__}: {e})"
    fn = getattr(mod, name, None)
    if fn is None:
        return None, f"{module} has no {name}()"
    return fn, ""


def need(path: str, title: str) -> Any:
    fn, why = engine(path)
    if fn is None:
        raise NotAvailableError(f"{title} is not available in this build: {why}")
    return fn


# -- context ------------------------------------------------------------------------


@dataclass
class FlowContext:
    disk: Any                     # the selected boot device (DiskInfo)
    disks: list                   # the whole listing
    vg_name: str | None

    @property
    def members(self) -> list:
        return [d for d in self.disks if d.vg_name == self.vg_name]

    @property
    def refs(self) -> list:
        return [d.ref for d in self.members]

    @property
    def others(self) -> list:
        return [d for d in self.disks if d.vg_name != self.vg_name]


def import_install_vg(ctx: FlowContext) -> tuple[list[str], list]:
    """Import (open read-only, shared locks) the install VG; lines for the step log."""
    if not ctx.vg_name:
        from core.errors import NotFoundError
        raise NotFoundError(f"disk {ctx.disk.id} is not a PV of any VG; it cannot be a boot device")
    open_vg = need("core.vg:open_vg", "Importing the install VG")
    with open_vg(ctx.vg_name, ctx.refs, write=False, allow_exported=True) as vgo:
        desc = vgo.describe()
    lvs = [lv for lv in desc["lvs"] if lv.get("visible", True)]
    lines = [f"VG {desc['name']} seqno {desc['seqno']}, {len(desc['pvs'])} PV(s)"
             + (", EXPORTED" if desc.get("exported") else "") + " -- imported read-only",
             "LVs: " + (", ".join(f"{lv['name']} ({lv['type']}, {human(lv['size'])}"
                                  + (f", {lv['legs']} legs" if isinstance(lv.get('legs'), int) and lv['legs'] > 1 else "")
                                  + ")" for lv in lvs) or "none")]
    lines += [f"problem: {p}" for p in desc.get("problems", [])]
    return lines, ctx.members


# -- the generic run ------------------------------------------------------------------

def on_fabric(app, text: str) -> str:
    """Engine text with the fabric directory shortened to ``<fabric>/`` (the boot menu names it):
    an 80-column line keeps the image name, and the text does not change with where it lives."""
    root = getattr(app, "fabric", None)
    if root is None:
        return text
    for prefix in {str(Path(root).resolve()), str(Path(root).absolute()), str(root)}:
        text = text.replace(prefix.rstrip("/") + "/", "<fabric>/")
    return text



async def run_job(app, title: str, job, *, determinate: bool = True, after=None) -> Any:
    """Progress screen, then the result or the error screen.  Returns the Outcome."""
    from .error import ErrorScreen
    from .progress import ProgressScreen
    from .result import ResultScreen

    outcome = await app.push_screen_wait(ProgressScreen(title, job, determinate=determinate))
    if outcome.state == "error":
        await app.push_screen_wait(ErrorScreen(outcome.error, title=f"{title} failed"))
        return outcome
    lines = [on_fabric(app, line) for line in outcome.lines]
    if outcome.state == "cancelled":
        lines += ["", "The operation stopped at a safe point; the steps before it are complete.",
                  "Run it again to finish, or verify the disks."]
    if outcome.log:
        lines += ["", "Log:"] + [f"  {on_fabric(app, line)}" for line in outcome.log[-200:]]
    await app.push_screen_wait(ResultScreen(title, lines, ok=outcome.ok and outcome.clean,
                                            cancelled=outcome.state == "cancelled"))
    return outcome


async def in_thread(app, title: str, fn: Callable, *args, **kwargs) -> Any:
    """A short engine call (read the TOC, make a plan) off the UI thread; errors -> error screen."""
    from .error import ErrorScreen
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except Exception as e:  # every failure becomes the error screen, never a traceback
        await app.push_screen_wait(ErrorScreen(e, title=title))
        return None


async def not_available(app, error: NotAvailableError) -> None:
    from .error import ErrorScreen
    await app.push_screen_wait(ErrorScreen(error, title="Not available in this build"))


# -- the flows ------------------------------------------------------------------------


@dataclass
class Flow:
    id: str
    key: str
    title: str
    description: str
    needs: list[str] = field(default_factory=list)
    runner: Callable[[Any, FlowContext], Awaitable[bool]] | None = None

    def unavailable(self) -> str:
        """Why this build cannot run the flow ("" when it can)."""
        for path in self.needs:
            fn, why = engine(path)
            if fn is None:
                return why
        return ""

    async def run(self, app, ctx: FlowContext) -> bool:
        """Run the flow; True when disks may have changed."""
        if app.all_disks:
            ctx.disks = list(app.all_disks)
        why = self.unavailable()
        if why:
            await not_available(app, NotAvailableError(f"{self.title} is not available in this build: {why}"))
            return False
        return bool(await self.runner(app, ctx))


def _fabric(app) -> str | None:
    return str(app.fabric) if app.fabric is not None else None


# -- 1. BOS install (Figure 4) -----------------------------------------------------------

def read_toc(ctx: FlowContext) -> tuple[list, list]:
    open_install_vg = need("core.install:open_install_vg", "Reading the repository")
    with open_install_vg(ctx.vg_name, ctx.disks) as (_vgo, repo):
        toc = repo.toc()
        return list(toc.bos), list(toc.opps)


def toc_item(entry, ident: str | None = None) -> Any:
    from .choice import Item
    deps = f"; needs {', '.join(entry.dependencies)}" if entry.dependencies else ""
    return Item(ident or entry.name, f"{entry.name:<20} {entry.version:<12} {entry.format:<7} {human(entry.size):>6}",
                (entry.description or "(no description)") + deps)


async def install_flow(app, ctx: FlowContext) -> bool:
    from .choice import ChoiceScreen
    from .confirm import ConfirmScreen
    from .plan import PlanScreen
    from .target import TargetScreen

    install = need("core.install:install", "Install BOS")
    plan_install = need("core.install:plan_install", "Install BOS")
    toc = await in_thread(app, "Could not read the install repository", read_toc, ctx)
    if toc is None:
        return False
    boses, opps = toc
    if not boses:
        from core.errors import NotFoundError

        from .error import ErrorScreen
        await app.push_screen_wait(ErrorScreen(
            NotFoundError(f"install VG {ctx.vg_name}: the repository holds no BOS image; add one with "
                          f"'sanbos bos add'"), title="Nothing to install"))
        return False
    names = [b.name for b in boses]
    items = [toc_item(b, b.name if names.count(b.name) == 1 else
                      f"{b.name}:{'raw' if b.format.startswith('raw') else 'tar'}") for b in boses]
    pick = await app.push_screen_wait(ChoiceScreen("Install BOS: choose the BOS", "BOS images in the TOC "
                                                   f"of {ctx.vg_name}:", items))
    if not pick:
        return False
    bos = pick[0]
    chosen: list[str] = []
    if opps:
        chosen = await app.push_screen_wait(ChoiceScreen(
            "Install BOS: choose OPPs", "Optional products to install with it (Space marks, F9 done):",
            [toc_item(o) for o in opps], multi=True, allow_none=True))
        if chosen is None:
            return False
    targets = await app.push_screen_wait(TargetScreen("Install BOS: choose the target disk", ctx.others,
                                                      purpose="target disk for the new root VG"))
    if not targets:
        return False
    target = targets[0]
    plan = await in_thread(app, "The install cannot go ahead", plan_install, ctx.vg_name, bos, target.id,
                           chosen, fabric=_fabric(app))
    if plan is None:
        return False
    steps = [on_fabric(app, s.strip()) for s in str(plan).splitlines()[1:] if s.strip()]
    if not await app.push_screen_wait(PlanScreen(f"Install {bos}", steps, destructive=True)):
        return False
    if not await app.push_screen_wait(ConfirmScreen(target.id, f"Install BOS {bos} onto disk {target.id}.")):
        return False

    def job(rep) -> list[str]:
        res = install(ctx.vg_name, bos, target.id, chosen, fabric=_fabric(app), progress=rep.progress)
        return str(res).splitlines()

    await run_job(app, f"Install {bos} onto ...{target.id[-8:]}", job)
    return True


# -- 2. recover a root VG (Figure 5) -------------------------------------------------------

async def recover_flow(app, ctx: FlowContext) -> bool:
    from .confirm import ConfirmScreen
    from .plan import PlanScreen
    from .target import TargetScreen

    recover = need("core.recover:recover", "Recover root VG")
    check_rootvg = need("core.recover:check_rootvg", "Recover root VG")
    roots = [d for d in ctx.others if d.vg_name]
    if not roots:
        from core.errors import NotFoundError

        from .error import ErrorScreen
        await app.push_screen_wait(ErrorScreen(NotFoundError(
            "no root VG disk found: no disk outside the install VG holds a VG"), title="Nothing to recover"))
        return False
    chosen = await app.push_screen_wait(TargetScreen("Recover root VG: choose the root disk", roots,
                                                     purpose="root-VG disk to recover", safety=False))
    if not chosen:
        return False
    root = chosen[0]
    defects = await in_thread(app, "Could not check the root VG", check_rootvg, root.id, fabric=_fabric(app))
    if defects is None:
        return False
    steps = [f"root VG {root.vg_name} on {root.id}: "
             + (f"{len(defects)} defect(s) found" if defects else "no defect found; the boot side is rewritten anyway")]
    steps += [f"defect: {x.kind}: {x.message}" for x in defects]
    steps += [f"import root VG {root.vg_name} for writing (exclusive locks)",
              "rebuild the boot image from the root file system's /boot (or from install VG "
              f"{ctx.vg_name}'s maintenance kernel when /boot is damaged too)",
              "rewrite the boot LV and GRUB for BIOS and UEFI, then check again",
              "user data in the root file system is not touched"]
    if not await app.push_screen_wait(PlanScreen(f"Recover the root VG on ...{root.id[-8:]}", steps,
                                                 destructive=True, note="Only the boot side is rewritten.")):
        return False
    if not await app.push_screen_wait(ConfirmScreen(root.id, f"Rebuild the boot side of disk {root.id}.")):
        return False

    def job(rep) -> list[str]:
        res = recover(ctx.vg_name, root.id, fabric=_fabric(app), progress=rep.progress)
        after = getattr(res, "after", [])
        rep.clean = not after
        return str(res).splitlines() + [f"  still wrong: {x}" for x in after]

    await run_job(app, f"Recover root VG on ...{root.id[-8:]}", job)
    return True


# -- 3. add OPPs (Figure 6) -----------------------------------------------------------------

def _check_files(text: str) -> str | None:
    missing = [f for f in text.split() if not Path(f).is_file()]
    return f"No such file: {', '.join(missing)}" if missing else None


async def opps_flow(app, ctx: FlowContext) -> bool:
    from .ask_text import AskTextScreen
    from .plan import PlanScreen

    add_opps = need("core.repo:add_opps", "Add OPPs")
    inspect_opp = need("core.repo:inspect_opp", "Add OPPs")
    text = await app.push_screen_wait(AskTextScreen(
        "Add OPPs", "OPP image files to add (Debian packages or tarballs), separated by spaces:",
        validate=_check_files))
    if not text:
        return False
    files = text.split()
    entries = await in_thread(app, "Cannot add these OPPs", lambda: [inspect_opp(f) for f in files])
    if entries is None:
        return False
    steps = [f"read and check {len(files)} file(s) (metadata, name, duplicates, space); nothing written yet"]
    steps += [f"  {e.name} {e.version} ({e.format}, {human(e.size)})"
              + (f" needs {', '.join(e.dependencies)}" if e.dependencies else "") for e in entries]
    steps += [f"import install VG {ctx.vg_name} if exported, open it exclusively",
              "write the images into the repository on every instlv leg and read them back",
              "update the TOC, close the repository, export the VG again"]
    if not await app.push_screen_wait(PlanScreen(f"Add {len(files)} OPP(s) to {ctx.vg_name}", steps)):
        return False

    def job(rep) -> list[str]:
        added = add_opps(ctx.vg_name, ctx.refs, files, progress=rep.progress)
        return [f"added {e.name} {e.version} ({e.format}, {human(e.size)}) sha256 {e.sha256[:16]}..."
                for e in added]

    await run_job(app, f"Add OPPs to {ctx.vg_name}", job)
    return True


# -- 3b. add a BOS to the install repository -------------------------------------------------

async def bos_flow(app, ctx: FlowContext) -> bool:
    from .ask import AskScreen
    from .ask_text import AskTextScreen
    from .choice import ChoiceScreen, Item
    from .error import ErrorScreen
    from .plan import PlanScreen
    from core.errors import UsageError

    add_bos = need("core.repo:add_bos", "Add a BOS")
    inspect_bos = need("core.repo:inspect_bos", "Add a BOS")
    pick = await app.push_screen_wait(ChoiceScreen("Add a BOS: the format", f"How is the BOS image for "
                                                   f"{ctx.vg_name} stored?", [
        Item("tar", "A root file-system tarball", "A .tar, .tar.gz, .tar.xz or .tar.zst of the BOS root; it "
             "goes into /bos of the repository file system (instlv)."),
        Item("raw", "A raw ext2/3/4 file-system image", "Stored as its own LV bos_<name>, raid1 over the boot "
             "disks; the image must be a clean file system (e2fsck -fn)."),
    ]))
    if not pick:
        return False
    raw = pick[0] == "raw"
    path = await app.push_screen_wait(AskTextScreen(
        "Add a BOS: the image file", ("Path of the raw BOS file-system image:" if raw else
                                      "Path of the BOS root file-system tarball:"), validate=input_file_problem))
    if not path:
        return False
    entry = await in_thread(app, "This is not a usable BOS image", inspect_bos, path, raw=raw)
    if entry is None:
        return False
    toc = await in_thread(app, "Could not read the install repository", read_toc, ctx)
    if toc is None:
        return False
    boses, _ = toc
    same = [b for b in boses if b.name == entry.name and (b.format == "raw-lv") == raw]
    if same:
        await app.push_screen_wait(ErrorScreen(UsageError(
            f"VG {ctx.vg_name}: the repository already holds BOS {entry.name} {same[0].version} "
            f"({same[0].format}); remove it first (sanbos bos remove) or give the image another name. "
            f"Nothing was written."), title="Already in the repository"))
        return False
    steps = [f"BOS {entry.name} {entry.version} ({entry.format}, {human(entry.size)}), sha256 {entry.sha256[:16]}...",
             f"  {entry.description or '(no description)'}",
             "check the name, duplicates and free space; nothing written yet",
             f"import install VG {ctx.vg_name} if exported, open it exclusively"]
    if raw:
        steps += [f"create LV {entry.lv} (raid1 over the boot disks), write the image onto every leg and "
                  "read each leg back (SHA-256)", "add the entry to the TOC on every instlv leg"]
    else:
        steps += [f"write the tarball as /bos/{entry.file} on every instlv leg and read it back (SHA-256)"]
    steps += ["swap the TOC, close the repository, export the VG again if it was exported"]
    if not await app.push_screen_wait(PlanScreen(f"Add BOS {entry.name} to {ctx.vg_name}", steps)):
        return False
    if not await app.push_screen_wait(AskScreen(
            "Add the BOS?", f"Write BOS {entry.name} {entry.version} ({human(entry.size)}) into the install "
                           f"repository of VG {ctx.vg_name}?")):
        return False

    def job(rep) -> list[str]:
        e = add_bos(ctx.vg_name, ctx.refs, path, raw=raw, progress=rep.progress)
        return [f"added BOS {e.name} {e.version} ({e.format}, {human(e.size)}) sha256 {e.sha256[:16]}...",
                f"stored as {'LV ' + str(e.lv) if e.lv else '/bos/' + str(e.file)}"]

    await run_job(app, f"Add BOS {entry.name} to {ctx.vg_name}", job)
    return True


# -- 4. boot copies -------------------------------------------------------------------------


async def _run_report_job(app, title: str, call, *, tail=None, actions: bool = True):
    """Run ``call(rep)`` (a core.bootcopy operation returning a Report) on the
    progress screen; the job is clean when the report is ok.  Returns the
    Report, or None when the job failed or was cancelled."""
    result = {}

    def job(rep) -> list[str]:
        report = call(rep)
        result["report"] = report
        rep.clean = report.ok
        lines = (list(getattr(report, "actions", [])) if actions else []) + str(report).splitlines()
        return lines + (tail(report) if tail else [])

    await run_job(app, title, job)
    return result.get("report")


def _health_update(app, ctx: FlowContext, report) -> None:
    health = report.health()
    for d in ctx.disks:
        if d.id in health:
            d.boot_copy = health[d.id]


@dataclass
class CopyState:
    """What the VG metadata says about boot copies (read-only; no copy is read)."""

    has_bootlv: bool = False
    copies: list[str] = field(default_factory=list)     # disk IDs in boot order
    install_vg: bool = False                            # the VG has the repository LV
    bootlv_bytes: int = 0
    extent: int = 0
    free: dict[str, int] = field(default_factory=dict)  # disk ID -> free bytes on its PV


def copy_state(ctx: FlowContext) -> CopyState:
    from core import bootcopy
    open_vg = need("core.vg:open_vg", "Boot copies")
    st = CopyState()
    with open_vg(ctx.vg_name, ctx.refs, write=False, allow_exported=True) as vgo:
        desc = vgo.describe()
        st.extent = desc["extent_size"]
        for pv in desc["pvs"]:
            if pv["disk"]:
                st.free[pv["disk"]] = pv["pe_free"] * st.extent
        st.install_vg = any(lv["name"] == "instlv" for lv in desc["lvs"])
        lv = vgo.vg.lv(bootcopy.BOOT_LV)
        if lv is not None:
            st.has_bootlv = True
            st.bootlv_bytes = lv.extents * st.extent
            st.copies = bootcopy.boot_order(vgo)
    return st


def boot_disk_readiness(disks: list, state: CopyState, min_bytes: int) -> dict[str, list[str]]:
    """Per disk, why it cannot hold a boot copy ([] = ready): GPT boot partitions, free space, in use."""
    from core import gpt, safety
    from core.disk import Disk
    out: dict[str, list[str]] = {}
    for d in disks:
        why: list[str] = []
        if d.id in state.copies:
            why.append("already a boot disk")
        try:
            with Disk(d.ref.path, name=d.id) as dk:
                kinds = {p.kind for p in (gpt.read_table(dk) or [])}
            if not {"bios_grub", "esp"} <= kinds:
                why.append("no bios_grub/ESP partitions (not the install-VG GPT layout)")
        except Exception as e:  # an unreadable disk cannot be a boot disk
            why.append(f"cannot read its partition table: {e}")
        free = state.free.get(d.id)
        if free is None:
            why.append(f"not a PV of this VG")
        elif free < min_bytes:
            why.append(f"only {human(free)} free on its PV, a boot copy needs {human(min_bytes)}")
        try:
            pids = safety.openers(d.ref.path)
        except Exception:
            pids = []
        if pids:
            why.append("in use by PID " + ", ".join(map(str, pids)))
        out[d.id] = why
    return out


async def choose_boot_image(app, title: str) -> tuple[str, Any] | None:
    """("demo", None) or ("file", ImageInfo); None when the operator goes back."""
    from .ask_text import AskTextScreen
    from .choice import ChoiceScreen, Item
    check = need("core.bootimage:check", title)
    pick = await app.push_screen_wait(ChoiceScreen(f"{title}: the boot image", "Which maintenance boot image?", [
        Item("demo", "The demo boot image (built now)", "core.bootimage.demo: the Debian kernel and a busybox "
             "initramfs that prints SANBOS BOOT OK; built into a scratch directory while the job runs."),
        Item("file", "A boot image file ...", "A file made by 'sanbos bootimage build -o FILE' (or "
             "'bootimage demo -o FILE'); it is checked before anything is written."),
    ]))
    if not pick:
        return None
    if pick[0] == "demo":
        return "demo", None
    path = await app.push_screen_wait(AskTextScreen(
        f"{title}: boot image file", "Path of the boot image file:", validate=input_file_problem))
    if not path:
        return None
    info = await in_thread(app, "This is not a usable boot image", check, path)
    if info is None:
        return None
    return "file", info


def input_file_problem(text: str) -> str | None:
    """A clear message for a path that is not a readable file (None when it is)."""
    p = Path(text).expanduser()
    if not p.exists():
        return f"No such file: {text}"
    if p.is_dir():
        return f"{text} is a directory; give the image file inside it."
    if not os.access(p, os.R_OK):
        return f"{text} cannot be read (permission denied)."
    return None


async def mirror_flow(app, ctx: FlowContext, state: CopyState) -> bool:
    """Boot copies on a VG that has none: disks (boot order = marking order), image, plan, typed confirm."""
    from .confirm import ConfirmScreen
    from .error import ErrorScreen
    from .plan import PlanScreen
    from .target import TargetScreen
    from core import bootcopy
    from core.errors import UsageError

    mirror = need("core.bootcopy:mirror", "Mirror boot copies")
    if state.has_bootlv and not state.install_vg:
        await app.push_screen_wait(ErrorScreen(UsageError(
            f"VG {ctx.vg_name} has an LV {bootcopy.BOOT_LV} without boot-copy records and no install "
            f"repository: it looks like a root VG's own boot LV, which mirroring would replace. "
            f"Nothing was done."), title="Not an install VG"))
        return False
    need_bytes = bootcopy.DEFAULT_MIN_SIZE + state.extent
    chosen = await app.push_screen_wait(TargetScreen(
        f"Mirror boot copies onto disks of {ctx.vg_name}", ctx.members, multi=True,
        purpose="boot disks in boot order (mark the first first)",
        assess=lambda disks: boot_disk_readiness(disks, state, need_bytes),
        labels=("ready", "REFUSED", "can hold a boot copy (boot partitions, free space)")))
    if not chosen:
        return False
    ids = [d.id for d in chosen]
    image = await choose_boot_image(app, "Mirror boot copies")
    if image is None:
        return False
    kind, info = image
    what = ("the demo boot image (built first)" if kind == "demo"
            else f"{info.path} ({human(info.size)}, sha256 {info.sha256[:16]}...)")
    steps = [f"image: {what}"]
    if kind == "demo":
        steps.append("build the demo boot image into a scratch directory (Debian kernel + busybox)")
    if state.has_bootlv:
        steps.append(f"remove {bootcopy.BOOT_LV} left by an interrupted mirror (it has no recorded copy)")
    steps += [f"create {bootcopy.BOOT_LV} ({'raid1, ' + str(len(ids)) + ' legs' if len(ids) > 1 else 'linear'}), "
              f"one leg per boot disk"]
    steps += [f"boot copy {i}: write the image onto {d} and read it back" for i, d in enumerate(ids, 1)]
    steps += ["record every copy (SHA-256) in the VG metadata",
              "install GRUB (BIOS + UEFI) on every boot disk, its own copy first",
              "verify every copy"]
    if not await app.push_screen_wait(PlanScreen(
            f"Mirror boot copies onto {len(ids)} disk(s)", steps, destructive=True,
            warning="DESTRUCTIVE: GRUB replaces the boot code of every boot disk; data LVs are not "
                    "touched. You will be asked to type the first boot disk's ID.")):
        return False
    if not await app.push_screen_wait(ConfirmScreen(
            ids[0], f"Mirror the boot image onto {len(ids)} disk(s) of VG {ctx.vg_name}.",
            consequence=f"GRUB replaces the boot code (MBR, bios_grub, ESP) of {', '.join(ids)}; "
                        f"a new LV {bootcopy.BOOT_LV} takes free space on them.",
            noun="first boot disk's full ID")):
        return False
    def call(rep):
        import tempfile
        with tempfile.TemporaryDirectory(prefix="sanbos-console-boot.") as tmp:
            path = info.path if info is not None else None
            if kind == "demo":
                demo = need("core.bootimage:demo", "The demo boot image")
                path = str(Path(tmp) / "boot.img")
                made = demo(path, progress=lambda m, f=None: rep.progress(
                    f"demo image: {m}", None if f is None else 0.2 * f))
                rep.log(f"demo boot image {human(made.size)} sha256 {made.sha256[:16]}...")
            report = mirror(ctx.vg_name, ctx.refs, path, boot=ids,
                            progress=lambda m, f=None: rep.progress(
                                m, None if f is None else (0.2 + 0.8 * f if kind == "demo" else f)))
        return report

    report = await _run_report_job(app, f"Mirror boot copies of {ctx.vg_name}", call)
    if report is not None:
        _health_update(app, ctx, report)
    return True


async def add_copies_flow(app, ctx: FlowContext, state: CopyState) -> bool:
    """More boot disks for a VG that has copies: a new leg each, appended to the boot order."""
    from .confirm import ConfirmScreen
    from .plan import PlanScreen
    from .target import TargetScreen

    add = need("core.bootcopy:add", "Mirror onto more disks")
    candidates = [d for d in ctx.members if d.id not in state.copies]
    chosen = await app.push_screen_wait(TargetScreen(
        f"Mirror the boot image onto more disks of {ctx.vg_name}", candidates, multi=True,
        purpose="new boot disks",
        assess=lambda disks: boot_disk_readiness(disks, state, state.bootlv_bytes + state.extent),
        labels=("ready", "REFUSED", "can hold a boot copy (boot partitions, free space)")))
    if not chosen:
        return False
    ids = [d.id for d in chosen]
    steps = [f"copy the boot image from a good copy onto {i} and read it back" for i in ids]
    steps += [f"append the new copies to the boot order (after {len(state.copies)} existing)",
              "install GRUB on every boot disk"]
    if not await app.push_screen_wait(PlanScreen(
            f"Mirror onto {len(ids)} more disk(s)", steps, destructive=True,
            warning="DESTRUCTIVE: GRUB replaces the boot code of the new boot disks; existing copies and "
                    "data LVs are not touched. You will be asked to type the first new disk's ID.")):
        return False
    if not await app.push_screen_wait(ConfirmScreen(
            ids[0], f"Make {len(ids)} more disk(s) boot disks of VG {ctx.vg_name}.",
            consequence=f"GRUB replaces the boot code (MBR, bios_grub, ESP) of {', '.join(ids)}.",
            noun="first new boot disk's full ID")):
        return False
    report = await _run_report_job(app, f"Mirror boot copies of {ctx.vg_name}",
                                   lambda rep: add(ctx.vg_name, ctx.refs, ids, progress=rep.progress))
    if report is not None:
        _health_update(app, ctx, report)
    return True


async def remove_copies_flow(app, ctx: FlowContext, state: CopyState) -> bool:
    """Stop using disks as boot disks (at least one copy stays)."""
    from .confirm import ConfirmScreen
    from .plan import PlanScreen
    from .target import TargetScreen

    remove = need("core.bootcopy:remove", "Remove boot copies")
    boot = [d for d in ctx.members if d.id in state.copies]
    keep_one = len(boot) <= 1

    def assess(disks):
        why = ["the only boot copy: a VG keeps at least one"] if keep_one else []
        return {d.id: list(why) for d in disks}

    chosen = await app.push_screen_wait(TargetScreen(
        f"Remove boot copies of {ctx.vg_name}", boot, multi=True, purpose="boot disks to give up",
        assess=assess, labels=("copy", "KEEP", "boot copy that can be removed")))
    if not chosen:
        return False
    ids = [d.id for d in chosen]
    steps = [f"drop boot copy on {i} (its bootlv leg and record)" for i in ids]
    steps += ["take GRUB off those disks (MBR boot code, bios_grub, ESP loader)",
              f"reinstall GRUB on the {len(state.copies) - len(ids)} remaining boot disk(s) (new fallback order)",
              "verify the remaining copies"]
    if not await app.push_screen_wait(PlanScreen(
            f"Remove {len(ids)} boot cop{'y' if len(ids) == 1 else 'ies'}", steps, destructive=True,
            warning="DESTRUCTIVE: these disks stop being boot disks. You will be asked to type the first "
                    "one's ID.")):
        return False
    if not await app.push_screen_wait(ConfirmScreen(
            ids[0], f"Remove the boot copies on {len(ids)} disk(s) of VG {ctx.vg_name}.",
            consequence=f"{', '.join(ids)} will no longer boot.", noun="first disk's full ID")):
        return False
    report = await _run_report_job(app, f"Remove boot copies of {ctx.vg_name}",
                                   lambda rep: remove(ctx.vg_name, ctx.refs, ids, progress=rep.progress))
    if report is not None:
        for d in ctx.disks:
            if d.id in ids:
                d.boot_copy = "none"
        _health_update(app, ctx, report)
    return True


async def bootcopies_flow(app, ctx: FlowContext) -> bool:
    from .ask_text import AskTextScreen
    from .choice import ChoiceScreen, Item
    from .confirm import ConfirmScreen
    from .plan import PlanScreen

    state = await in_thread(app, "Could not read the boot copies", copy_state, ctx)
    if state is None:
        return False
    none_yet = not state.copies
    actions = [
        Item("verify", "Verify every boot copy", "Read every copy in full and compare it with the recorded "
             "SHA-256; check GRUB on every boot disk. Writes nothing."),
        Item("repair", "Repair bad copies", "Rewrite bad or stale copies from a good one, read them back, "
             "reinstall GRUB where it is missing."),
        Item("add", "Mirror onto disks" if none_yet else "Mirror onto more disks",
             ("The VG has no boot copies yet: choose its boot disks and a boot image; a copy on each, "
              "GRUB on each." if none_yet else
              "Make more disks of the VG boot disks: a new copy each, appended to the boot order; "
              "GRUB on every boot disk.")),
        Item("replace", "Replace the boot image", "Write a new maintenance boot image onto every copy."),
        Item("remove", "Remove boot copies from disks", "Stop using disks as boot disks: drop their copy, "
             "take GRUB off them; at least one copy stays."),
    ]
    for it in actions:
        fn, why = engine(f"core.bootcopy:{'mirror' if it.id == 'add' and none_yet else it.id}")
        if fn is None:
            it.label += "   (not available in this build)"
            it.description += f"\nNot available: {why}"
        elif none_yet and it.id != "add":
            it.disabled = True
            it.label += "   (no boot copies yet)"
    where = (f"{len(state.copies)} boot cop{'y' if len(state.copies) == 1 else 'ies'}" if state.copies
             else "no boot copies yet")
    pick = await app.push_screen_wait(ChoiceScreen(f"Boot copies of {ctx.vg_name}",
                                                   f"VG {ctx.vg_name}: {where}. Choose an action:", actions,
                                                   start=2 if none_yet else 0))
    if not pick:
        return False
    action = pick[0]
    if action == "add":
        return await (mirror_flow if none_yet else add_copies_flow)(app, ctx, state)
    if action == "remove":
        return await remove_copies_flow(app, ctx, state)
    fn = need(f"core.bootcopy:{action}", f"Boot copies: {action}")

    if action == "verify":
        report = await _run_report_job(
            app, f"Verify boot copies of {ctx.vg_name}",
            lambda rep: fn(ctx.vg_name, ctx.refs, progress=rep.progress), actions=False,
            tail=lambda r: [] if r.ok else ["", "Choose 'Repair bad copies' to fix them."])
        if report is not None:
            _health_update(app, ctx, report)
        return True

    if action == "repair":
        steps = ["read every copy in full and hash it", "rewrite every bad or stale copy from a good copy",
                 "read each rewritten copy back", "reinstall GRUB on boot disks where it is missing"]
        if not await app.push_screen_wait(PlanScreen(f"Repair boot copies of {ctx.vg_name}", steps)):
            return False

        def job(rep) -> list[str]:
            report = fn(ctx.vg_name, ctx.refs, progress=rep.progress)
            rep.clean = report.ok
            return str(report).splitlines()

        await run_job(app, f"Repair boot copies of {ctx.vg_name}", job)
        return True

    # replace
    image = await app.push_screen_wait(AskTextScreen(
        "Replace the boot image", "The new maintenance boot image (sanbos bootimage build -o FILE):",
        validate=input_file_problem))
    if not image:
        return False
    steps = [f"check that {image} is a boot image ({human(os.path.getsize(image))}) and fits",
             f"write it onto every boot copy of {ctx.vg_name}, one at a time, each read back and recorded",
             "reinstall GRUB on every boot disk"]
    if not await app.push_screen_wait(PlanScreen(f"Replace the boot image of {ctx.vg_name}", steps,
                                                 destructive=True, note="Every boot copy is overwritten.")):
        return False
    if not await app.push_screen_wait(ConfirmScreen(ctx.vg_name, f"Replace every boot copy of VG {ctx.vg_name} "
                                                    f"with {image}.",
                                                    consequence=f"Every boot copy of VG {ctx.vg_name} will be "
                                                                "overwritten.", noun="VG name")):
        return False

    def job(rep) -> list[str]:
        return str(fn(ctx.vg_name, ctx.refs, image, progress=rep.progress)).splitlines()

    await run_job(app, f"Replace the boot image of {ctx.vg_name}", job)
    return True


# -- 5. boot lists ------------------------------------------------------------------------

async def bootlists_flow(app, ctx: FlowContext) -> bool:
    from .choice import ChoiceScreen, Item

    Registry = need("core.registry:Registry", "Boot lists")
    reg = await in_thread(app, "Could not open the registry", Registry, app.registry_path,
                          inventory=[d.id for d in ctx.disks])
    if reg is None:
        return False
    try:
        from .machine import MachineScreen
        last = 0
        while True:                     # back here after each machine, Esc returns to the menu
            machines = await in_thread(app, "Could not read the registry", reg.list_machines)
            if machines is None:
                return False
            if not machines:
                from core.errors import NotFoundError
                from .error import ErrorScreen
                await app.push_screen_wait(ErrorScreen(NotFoundError(
                    f"the registry {reg.path} has no machines yet (sanbos machine add)"), title="No machines"))
                return False
            items = [Item(m.id, f"{m.id:<36} {m.name:<16} {m.boot_type}", "") for m in machines]
            pick = await app.push_screen_wait(ChoiceScreen("Boot lists: choose the machine",
                                                           f"Machines in {reg.path}:", items, start=last))
            if not pick:
                return False
            last = [m.id for m in machines].index(pick[0])
            await app.push_screen_wait(MachineScreen(reg, pick[0], ctx.disks))
    finally:
        reg.close()


MENU = [
    Flow("install", "1", "Install BOS onto a target disk",
         "Figure 4: a root VG on a blank target disk with the BOS and chosen OPPs, and its boot loader.",
         ["core.install:install", "core.install:plan_install", "core.install:open_install_vg"], install_flow),
    Flow("recover", "2", "Recover a root VG",
         "Figure 5: import a broken root VG and rebuild its boot image and boot loader.",
         ["core.recover:recover", "core.recover:check_rootvg"], recover_flow),
    Flow("opps", "3", "Add OPPs to the install VG",
         "Figure 6: import, write the OPP images, update the TOC, export.",
         ["core.repo:add_opps", "core.repo:inspect_opp"], opps_flow),
    Flow("bootcopies", "4", "Boot copies: verify, repair, mirror, replace",
         "The maintenance boot image on every boot disk: check or fix the copies, add boot disks, "
         "install a new image, remove copies.", ["core.bootcopy:verify"], bootcopies_flow),
    Flow("bootlists", "5", "Boot lists (per machine and mode)",
         "A machine's boot type and device lists: the boot list of each mode, rootvg, primary, "
         "secondary, nonessential; view, reorder and save.",
         ["core.registry:Registry"], bootlists_flow),
    Flow("bos", "6", "Add a BOS to the install repository",
         "Figure 6 for a BOS: a root file-system tarball into /bos, or a raw file-system image as its own LV.",
         ["core.repo:add_bos", "core.repo:inspect_bos"], bos_flow),
]
BY_ID = {f.id: f for f in MENU}
