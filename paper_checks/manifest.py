"""The manifest of committed results: exactly which files under experiments/results/ the audit
reads, each with its sha256, size, kind, the claims it serves and a summary of its configuration.

``experiments/results/MANIFEST.json`` is the audit's only way to a result file. A claim test asks
for files by kind (:func:`entries`) and gets each one verified (:func:`verified_path`): a file
whose bytes differ from the recorded sha256, that is missing although listed, or that cannot be
parsed is an error naming the file (:class:`ResultFileError`), never a silent "missing". Any other
file under the folder is ignored by the audit and listed as such in its report
(:func:`survey`): a stray copy of ``fig1.json`` in a subfolder cannot change a verdict.

Command line (one command per change; run from a checkout, it edits the checkout's manifest)::

    mamlconv manifest add FILE... [--kind K] [--claims S4-1,S5-1] [--what T]
    mamlconv manifest exclude FILE... --why "what it is"
    mamlconv manifest update     # re-hash listed files after a rerun
    mamlconv manifest remove FILE...
    mamlconv manifest check      # exit 1 on a mismatch or unlisted file

``add`` recognises sweep results (``.npz`` of ``mamlconv sweep``; claims S4-* by problem and
S5-1), figure records (``fig1.json``/``fig5.json`` of ``mamlconv figure``), comparisons
(``*_compare.json`` of ``mamlconv compare``; X-5) and PNG figures; any other file needs
``--kind`` and ``--claims``. A data file's figure (``X.png`` or ``X_fig4.png`` beside ``X.npz``)
is registered with it. ``exclude`` lists a committed file the audit does not read (notes,
PDFs, sidecars), so that ``check`` accepts it. ``--results DIR`` works on another folder (default:
``MAMLCONV_RESULTS`` or the package's experiments/results/).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from mamlconv.errors import ResultFileError  # a committed file the audit cannot trust

MANIFEST_NAME = "MANIFEST.json"
SCHEMA_ID = "mamlconv-results-manifest/1"
COMMAND = "mamlconv manifest"
"""The command that edits the manifest, as named in messages."""
KINDS = ("sweep", "figure-record", "comparison", "figure", "data")
_FIGURE_CLAIMS = {"fig1": ("S2-7",), "fig5": ("S3-2",)}
_SWEEP_CLAIMS = {"sinusoid": "S4-1", "omniglot": "S4-2", "miniimagenet": "S4-3"}


@dataclass(frozen=True)
class Entry:
    """One file the audit reads (a row of MANIFEST.json's ``files``)."""

    path: str
    """Relative to the results folder, with forward slashes."""
    sha256: str
    size: int
    kind: str
    claims: tuple[str, ...]
    what: str
    config: dict[str, Any] = field(default_factory=dict)
    figures: tuple[str, ...] = ()
    """Figures of this data file (paths of ``figure`` entries)."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["claims"], d["figures"] = list(self.claims), list(self.figures)
        return d


@dataclass
class Manifest:
    """MANIFEST.json: the files the audit reads, and committed files it deliberately does not."""

    files: dict[str, Entry] = field(default_factory=dict)
    not_audited: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "about": (
                "The result files the claims audit reads (and only these), with sha256. "
                f"Change with `{COMMAND} add|exclude|update|remove`; verify with "
                f"`{COMMAND} check`."
            ),
            "files": [self.files[k].as_dict() for k in sorted(self.files)],
            "not_audited": [
                {"path": k, "why": self.not_audited[k]} for k in sorted(self.not_audited)
            ],
        }


# ----------------------------------------------------------------------------- reading
def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def _package_results() -> Path | None:
    spec = importlib.util.find_spec("mamlconv.experiments")
    if spec is None or not spec.submodule_search_locations:
        return None
    return (Path(next(iter(spec.submodule_search_locations))) / "results").resolve()


def shown(results: Path, rel: str) -> str:
    """How messages and the report name a result file: ``experiments/results/<rel>`` in the
    package's own folder, the full path in another one (``MAMLCONV_RESULTS``)."""
    if Path(results).resolve() == _package_results():
        return f"experiments/results/{rel}".rstrip("/")
    return str(Path(results) / rel) if rel else str(results)


_shown = shown


def load_manifest(results: Path) -> Manifest | None:
    """The manifest of ``results``, or None when the folder has none; ResultFileError if corrupt."""
    path = Path(results) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA_ID:
            raise ValueError(f"schema is {data.get('schema')!r}, expected {SCHEMA_ID!r}")
        files = {}
        for row in data["files"]:
            entry = Entry(
                path=str(row["path"]),
                sha256=str(row["sha256"]),
                size=int(row["size"]),
                kind=str(row["kind"]),
                claims=tuple(row.get("claims", ())),
                what=str(row.get("what", "")),
                config=dict(row.get("config", {})),
                figures=tuple(row.get("figures", ())),
            )
            files[entry.path] = entry
        not_audited = {str(r["path"]): str(r.get("why", "")) for r in data.get("not_audited", [])}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResultFileError(
            f"{_shown(Path(results), MANIFEST_NAME)} is corrupt ({exc}); restore it from git "
            f"or rebuild it with `{COMMAND} add`"
        ) from None
    return Manifest(files=files, not_audited=not_audited)


_VERIFIED: dict[tuple[str, int, int], str] = {}
READ: set[str] = set()
"""Paths (relative) verified in this process: what the audit actually read."""


def verify(results: Path, entry: Entry) -> Path:
    """The file of ``entry``, after checking that its size and sha256 are the recorded ones."""
    path = Path(results) / entry.path
    shown = _shown(Path(results), entry.path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ResultFileError(
            f"{shown} is listed in {MANIFEST_NAME} but missing; restore it from git, or "
            f"`{COMMAND} remove {entry.path}`"
        ) from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    digest = _VERIFIED.get(key)
    if digest is None:
        digest = sha256_of(path)
        _VERIFIED[key] = digest
    if stat.st_size != entry.size or digest != entry.sha256:
        raise ResultFileError(
            f"{shown} changed since it was registered ({stat.st_size} bytes, sha256 "
            f"{digest[:12]}…; {MANIFEST_NAME} records {entry.size} bytes, {entry.sha256[:12]}…): "
            f"restore it with `git checkout -- {shown}`, or after checking the new file "
            f"`{COMMAND} update`"
        )
    READ.add(entry.path)
    return path


def entries(
    results: Path, *, kind: str, claim: str | None = None, **config: Any
) -> list[Entry] | None:
    """The manifest's entries of ``kind`` (for ``claim``; whose config matches ``config``),
    sorted by path; None when the folder has no manifest."""
    manifest = load_manifest(results)
    if manifest is None:
        return None
    out = []
    for e in manifest.files.values():
        if e.kind != kind or (claim is not None and claim not in e.claims):
            continue
        if any(e.config.get(k) != v for k, v in config.items()):
            continue
        out.append(e)
    return sorted(out, key=lambda e: e.path)


def load_json(results: Path, entry: Entry) -> Any:
    """The verified JSON file of ``entry``; ResultFileError naming it when it is not JSON."""
    from mamlconv.util.files import read_json  # the package's JSON rule: inf as null + _status

    path = verify(results, entry)
    try:
        return read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultFileError(
            f"{_shown(Path(results), entry.path)} is not valid JSON: {exc}"
        ) from None


_SWEEPS: dict[tuple[str, str], Any] = {}


def load_sweep(results: Path, entry: Entry) -> Any:
    """The verified sweep result of ``entry`` (``experiments.results.load_result``), cached by
    content; ResultFileError naming the file when it cannot be read."""
    from mamlconv.experiments.sweep.results import load_result

    path = verify(results, entry)
    key = (str(path), entry.sha256)
    if key not in _SWEEPS:
        try:
            result = load_result(path)
        except Exception as exc:  # BadZipFile, EOFError, KeyError, ValueError, ...
            raise ResultFileError(
                f"{_shown(Path(results), entry.path)} is not a readable sweep result "
                f"({type(exc).__name__}: {exc})"
            ) from None
        _SWEEPS[key] = result
    # every read, not once per content: the sidecar beside it may change on its own
    problem = derived_disagreement(_SWEEPS[key], path)
    if problem is not None:
        raise ResultFileError(
            f"{_shown(Path(results), entry.path)}: {problem}; the file was edited or "
            "damaged after it was made (the manifest's sha256 only says it was registered): "
            "restore it or rerun its sweep"
        )
    return _SWEEPS[key]


def derived_disagreement(result: Any, path: Path) -> str | None:
    """What in a sweep result disagrees with the data it is derived from, or None.

    Recomputed: each cell's divergence iteration against its stored loss trajectory (finite
    up to the recorded ``diverged_at``, non-finite after it; all finite for a cell recorded as
    not diverged), a stable cell's final loss against the trajectory's last record, the
    alpha and beta arrays against the configuration, and, when the ``.json`` sidecar is there,
    its cell counts and boundaries against the arrays."""
    import numpy as np

    from mamlconv.experiments.sweep.results import sidecar_path
    from mamlconv.util.files import read_json, same_values

    config = result.config
    for name, have, want in (
        ("alphas", result.alphas, config.alphas),
        ("betas", result.betas, config.betas),
    ):
        if not np.allclose(np.asarray(have, float), np.asarray(want, float), rtol=1e-9, atol=0):
            return f"its {name} array differs from its configuration's {name}"
    rows = [("cell", result.diverged_at, result.final_loss, result.trajectories.get("loss"))]
    if result.alpha0 is not None and "loss" in result.alpha0:
        a0 = result.alpha0
        rows.append(("alpha = 0 cell", a0.get("diverged_at"), a0.get("final_loss"), a0["loss"]))
    ticks = np.asarray(result.record_iters)
    for what, div, final, loss in rows:
        if loss is None or div is None or final is None:
            continue
        div, final, loss = np.asarray(div), np.asarray(final, float), np.asarray(loss, float)
        if loss.shape[:-1] != div.shape or final.shape != div.shape:
            return f"its {what} arrays disagree in shape"
        for index, d in np.ndenumerate(div):
            finite = np.isfinite(loss[index])
            if d < 0 and not finite.all():
                at = int(ticks[np.flatnonzero(~finite)[0]])
                return (
                    f"{what} {index} is recorded as not diverged (diverged_at -1), but its "
                    f"stored loss trajectory is not finite from iteration {at} on"
                )
            if d >= 0 and (not finite[ticks < d].all() or finite[ticks > d].any()):
                return (
                    f"{what} {index} is recorded as diverged at iteration {int(d)}, which its "
                    "stored loss trajectory contradicts"
                )
        stable = div < 0
        if ticks.size and ticks[-1] == config.iters and stable.any():
            last = loss[..., -1][stable]
            if not np.allclose(final[stable], last, rtol=1e-5, atol=1e-6):
                return (
                    f"the final loss of a stable {what} differs from the last record of its "
                    "loss trajectory"
                )
    side_path = sidecar_path(path)
    if side_path.is_file():
        try:
            side = read_json(side_path)
        except (OSError, ValueError, UnicodeDecodeError):
            return f"its sidecar {side_path.name} is not valid JSON"
        if not isinstance(side, dict):
            return f"its sidecar {side_path.name} is not a JSON object"
        b0 = result.alpha0_boundary()
        derived = {
            "n_cells": int(result.diverged.size),
            "n_diverged": int(result.diverged.sum()),
            "boundary": result.boundary().as_records(),
            "alpha0_boundary": None if b0 is None else b0.as_records()[0],
        }
        for field_name, value in derived.items():
            if field_name in side and not same_values(
                side[field_name], json.loads(json.dumps(_plain(value)))
            ):
                return (
                    f"its sidecar {side_path.name} records {field_name} that its arrays do not give"
                )
    return None


def _plain(value: Any) -> Any:
    """NumPy values as Python numbers (inf kept), for comparing with a JSON file's values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.tolist() if hasattr(value, "tolist") else value


def survey(results: Path) -> dict[str, Any]:
    """What the audit sees under ``results``: the manifest, its files, and every other file
    (ignored by the audit): ``{"manifest", "listed", "read", "ignored"}``."""
    results = Path(results)
    try:
        manifest = load_manifest(results)
        problem = None
    except ResultFileError as exc:
        manifest, problem = None, str(exc)
    listed = sorted(manifest.files) if manifest else []
    ignored = []
    present = sorted(p for p in results.rglob("*") if p.is_file()) if results.is_dir() else []
    for p in present:
        rel = p.relative_to(results).as_posix()
        if rel == MANIFEST_NAME or rel in listed or "__pycache__" in rel:
            continue
        if manifest is not None and rel in manifest.not_audited:
            why = f"committed, not read by the audit: {manifest.not_audited[rel]}"
        else:
            why = f"not in {MANIFEST_NAME}"
        ignored.append({"path": rel, "why": why})
    return {
        "folder": shown(results, ""),
        "manifest": MANIFEST_NAME if manifest is not None else None,
        "manifest_problem": problem,
        "listed": listed,
        "read": sorted(READ),
        "ignored": ignored,
    }


# ----------------------------------------------------------------------------- registering
def _sweep_summary(result: Any) -> dict[str, Any]:
    cfg = result.config
    return {
        "problem": cfg.problem,
        "variant": cfg.variant,
        "grid": f"{len(cfg.alphas)} alphas x {len(cfg.betas)} betas"
        + (" + alpha = 0 row" if result.alpha0 is not None else ""),
        "iters": cfg.iters,
        "dtype": cfg.dtype,
        "seed": cfg.seed,
        "device": result.provenance.get("device"),
        "commit": result.provenance.get("git_commit"),
    }


def describe(
    results: Path,
    rel: str,
    *,
    kind: str | None = None,
    claims: tuple[str, ...] | None = None,
    what: str | None = None,
    figures: tuple[str, ...] = (),
) -> Entry:
    """A manifest entry for ``results/rel``: its hash and, for the kinds the audit knows, its
    kind, claims, description and configuration read from the file itself."""
    path = Path(results) / rel
    config: dict[str, Any] = {}
    auto_kind, auto_claims, auto_what = "data", (), ""
    if path.suffix == ".npz":
        from mamlconv.experiments.sweep.results import load_result

        try:
            result = load_result(path)
        except Exception as exc:
            raise ResultFileError(
                f"{rel} is not a sweep result: {type(exc).__name__}: {exc}"
            ) from None
        config = _sweep_summary(result)
        auto_kind = "sweep"
        auto_claims = (_SWEEP_CLAIMS.get(config["problem"], ""), "S5-1")
        auto_claims = tuple(c for c in auto_claims if c)
        auto_what = f"{config['problem']} / {config['variant']} alpha x beta sweep (Fig. 4)"
    elif path.suffix == ".json":
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ResultFileError(f"{rel} is not valid JSON: {exc}") from None
        if isinstance(record, dict) and record.get("figure") in _FIGURE_CLAIMS:
            name = record["figure"]
            auto_kind, auto_claims = "figure-record", _FIGURE_CLAIMS[name]
            auto_what = f"curves of `mamlconv figure {name}`"
            cfg = record.get("config") or {}
            config = {
                "figure": name,
                "iters": record.get("iters"),
                "problem": cfg.get("problem"),
                "seed": cfg.get("seed"),
                "dtype": cfg.get("dtype"),
                "commit": (record.get("provenance") or {}).get("git_commit"),
            }
        elif isinstance(record, dict) and {"rows", "summary", "config"} <= record.keys():
            cfg = record["config"]
            auto_kind, auto_claims = "comparison", ("X-5",)
            auto_what = (
                f"`mamlconv compare` of the {cfg.get('problem')} / {cfg.get('variant')} sweep"
            )
            config = {
                "problem": cfg.get("problem"),
                "variant": cfg.get("variant"),
                "iters": cfg.get("iters"),
                "commit": (record.get("sweep_provenance") or {}).get("git_commit"),
            }
    elif path.suffix == ".png":
        auto_kind, auto_what = "figure", "figure"
    kind = kind or auto_kind
    if kind not in KINDS:
        raise ValueError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    claims = tuple(claims) if claims else auto_claims
    if kind == "data" and not claims:
        raise ValueError(f"{rel}: a file of kind 'data' needs --claims (the claims it serves)")
    return Entry(
        path=rel,
        sha256=sha256_of(path),
        size=path.stat().st_size,
        kind=kind,
        claims=claims,
        what=what or auto_what,
        config=config,
        figures=tuple(figures),
    )


def _figures_beside(results: Path, rel: str) -> list[str]:
    """``X.png`` and ``X_fig4.png`` beside ``X.<ext>`` (the figures drawn from it)."""
    p = PurePosixPath(rel)
    out = []
    for name in (f"{p.stem}.png", f"{p.stem}_fig4.png"):
        cand = p.with_name(name).as_posix()
        if cand != rel and (Path(results) / cand).is_file():
            out.append(cand)
    return out


def write_manifest(results: Path, manifest: Manifest) -> Path:
    """Write ``results/MANIFEST.json`` (sorted, one stable layout for clean diffs)."""
    path = Path(results) / MANIFEST_NAME
    path.write_text(json.dumps(manifest.as_dict(), indent=1, ensure_ascii=False) + "\n")
    return path


def _rel(results: Path, name: str) -> str:
    """A command-line FILE as a path relative to the results folder."""
    p = Path(name)
    for cand in (p, Path.cwd() / p, Path(results) / p):
        try:
            rel = cand.resolve().relative_to(Path(results).resolve())
        except ValueError:
            continue
        if (Path(results) / rel).is_file():
            return rel.as_posix()
    raise ValueError(f"{name}: no such file under {results}")


def add(
    results: Path,
    names: list[str],
    *,
    kind: str | None = None,
    claims: tuple[str, ...] | None = None,
    what: str | None = None,
) -> list[Entry]:
    """Register files (and the figures beside them) in the manifest; returns the new entries."""
    manifest = load_manifest(results) or Manifest()
    added = []
    for name in names:
        rel = _rel(results, name)
        figs = _figures_beside(results, rel) if not rel.endswith(".png") else []
        entry = describe(results, rel, kind=kind, claims=claims, what=what, figures=tuple(figs))
        for fig in figs:  # a figure serves the claims of its data
            manifest.files[fig] = describe(
                results, fig, claims=entry.claims, what=f"figure of {rel}"
            )
            manifest.not_audited.pop(fig, None)
        manifest.files[rel] = entry
        manifest.not_audited.pop(rel, None)
        added.append(entry)
    write_manifest(results, manifest)
    return added


def exclude(results: Path, names: list[str], *, why: str) -> None:
    """List committed files that the audit does not read (``check`` then accepts them)."""
    manifest = load_manifest(results) or Manifest()
    for name in names:
        rel = _rel(results, name)
        manifest.files.pop(rel, None)
        manifest.not_audited[rel] = why
    write_manifest(results, manifest)


def remove(results: Path, names: list[str]) -> None:
    """Drop files from the manifest (the audit stops reading them)."""
    manifest = load_manifest(results) or Manifest()
    for name in names:
        rel = PurePosixPath(name).as_posix()
        if rel not in manifest.files and rel not in manifest.not_audited:
            rel = _rel(results, name)
        manifest.files.pop(rel, None)
        manifest.not_audited.pop(rel, None)
    write_manifest(results, manifest)


def update(results: Path) -> list[str]:
    """Re-hash every listed file and re-read its description; returns the paths that changed."""
    manifest = load_manifest(results)
    if manifest is None:
        raise ValueError(f"no {MANIFEST_NAME} in {results}; start one with `{COMMAND} add FILE`")
    changed = []
    for rel, old in sorted(manifest.files.items()):
        if not (Path(results) / rel).is_file():
            raise ValueError(f"{rel} is listed but missing; `{COMMAND} remove {rel}` first")
        new = describe(
            results, rel, kind=old.kind, claims=old.claims, what=old.what, figures=old.figures
        )
        if new.sha256 != old.sha256 or new.size != old.size:
            changed.append(rel)
        manifest.files[rel] = new
    write_manifest(results, manifest)
    return changed


def check(results: Path) -> list[str]:
    """Problems with the manifest of ``results``: changed or missing files, unlisted files."""
    try:
        manifest = load_manifest(results)
    except ResultFileError as exc:
        return [str(exc)]
    if manifest is None:
        return [f"no {MANIFEST_NAME} in {results}"]
    problems = []
    for entry in manifest.files.values():
        try:
            verify(results, entry)
        except ResultFileError as exc:
            problems.append(str(exc))
    for row in survey(results)["ignored"]:
        if row["why"] == f"not in {MANIFEST_NAME}":
            problems.append(
                f"{row['path']} is not in {MANIFEST_NAME}: `{COMMAND} add {row['path']}` (read "
                f"by the audit) or `{COMMAND} exclude {row['path']} --why ...` (not read)"
            )
    return problems
