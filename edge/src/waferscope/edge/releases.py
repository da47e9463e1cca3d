"""Installs signed releases into A/B slots: verify, unpack, health gate, shadow, commit/rollback.

A release file (from the hub's deploy command or ``waferscope edge install-release``) is
verified against the trusted roots and the highest version in the store, unpacked into the slot
the active engine does not use, loaded beside it and put through the local health gate (it
loads, its golden set's logits match, its latency fits the budget). It then classifies live
wafers in shadow (:mod:`waferscope.edge.shadow`) while only the active engine's results are
kept; the trial's verdict commits it (the previous engine stays as last-known-good) or rolls it
back. A committed engine that fails at run time is replaced by the last-known-good one at once,
and the batch is classified again with it: no wafer is lost or kept twice, with or without the
hub. Every refusal is a typed error, an alert, and the running engine keeps serving.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from waferscope.edge.alerts import AlertEngine
from waferscope.edge.config import ModelConfig
from waferscope.edge.engine import ModelSlot, load_model
from waferscope.edge.release_config import ReleaseConfig
from waferscope.edge.release_ledger import ReleaseLedger, ReleaseState, slot_path
from waferscope.edge.shadow import ShadowTrial
from waferscope.edge.store import Store
from waferscope.protocols.errors import WaferscopeError
from waferscope.protocols.inference import (
    Classification,
    Model,
    PipelineSettings,
    PreparedWafer,
    classify_batch,
)
from waferscope.protocols.pb.release_pb2 import ShadowReport
from waferscope.protocols.release import (
    ReleaseError,
    UnknownReleaseKeyError,
    VerifiedRelease,
    trusted_roots,
    verify_release,
)
from waferscope.protocols.release.golden import golden_parity, load_golden

log = logging.getLogger(__name__)
SLOTS = ("a", "b")
ModelLoader = Callable[[Path | None, ModelConfig, Path | None], Model]


class ReleaseHealthError(WaferscopeError):
    """A verified release's engine failed the edge's local health gate (load, golden parity,
    latency); it was rolled back and the active engine keeps serving."""


def agent_version() -> str:
    """The installed edge agent's version (what ``min_agent_version`` is checked against)."""
    try:
        return version("waferscope-edge")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0"


@dataclass(frozen=True, slots=True)
class InstallOutcome:
    version: int
    model_version: str
    slot: str
    state: ReleaseState
    golden_max_abs_diff: float
    latency_ms: float


class ReleaseManager:
    """The edge's releases: install, shadow, commit, roll back (one per agent)."""

    def __init__(
        self,
        config: ReleaseConfig,
        model_config: ModelConfig,
        store: Store,
        alerts: AlertEngine,
        *,
        cache_dir: Path | None = None,
        on_report: Callable[[ShadowReport], None] | None = None,
    ) -> None:
        assert config.slots_dir is not None, "resolve the config first"
        self.config = config
        self.slots_dir = config.slots_dir
        self.model_config = model_config
        self.store = store
        self.ledger = ReleaseLedger(store)
        self.alerts = alerts
        self.cache_dir = cache_dir
        self.on_report = on_report
        self.slot: ModelSlot | None = None
        self.trial: ShadowTrial | None = None
        self._release_model: Model | None = None  # the active engine, when a release gave it
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ start-up
    def startup_bundle(self, fallback: Path | None) -> Path | None:
        """The bundle to start with: the active release's, else ``fallback`` (the configured
        one). A shadow trial cut short by a restart is rolled back."""
        trial = self.ledger.in_state(ReleaseState.SHADOW)
        if trial is not None:
            self.ledger.set_state(trial.version, ReleaseState.ROLLED_BACK, "agent restarted")
        active = self.ledger.in_state(ReleaseState.ACTIVE)
        if active is None:
            return fallback
        return slot_path(self.slots_dir, active.slot)

    def load_startup_model(self, load: ModelLoader) -> Model:
        """Load the start-up engine; when the active release's engine no longer loads, roll it
        back to last-known-good (or the configured bundle) and load that."""
        folder = self.startup_bundle(self.model_config.path)
        try:
            return load(folder, self.model_config, self.cache_dir)
        except WaferscopeError as exc:
            active = self.ledger.in_state(ReleaseState.ACTIVE)
            if active is None:
                raise
            folder = self._fall_back(active.version, f"the engine does not load at start-up: {exc}")
            return load(folder, self.model_config, self.cache_dir)

    def _fall_back(self, version: int, reason: str) -> Path | None:
        """Roll the active release back: alert, and return the folder to run instead (the
        last-known-good release's, else the configured bundle; None = the shipped one)."""
        back = self.ledger.revert(version, reason)
        log.error("release %d rolled back: %s", version, reason)
        self.alert("release_rolled_back", f"release {version} rolled back", reason, str(version))
        return slot_path(self.slots_dir, back.slot) if back else self.model_config.path

    def bind(self, slot: ModelSlot) -> None:
        """Attach the running engine's slot (after start-up loaded it)."""
        self.slot = slot
        active = self.ledger.in_state(ReleaseState.ACTIVE)
        if active is not None and slot.current.bundle.folder == slot_path(
            self.slots_dir, active.slot
        ):
            self._release_model = slot.current

    # ------------------------------------------------------------------ install
    def install(self, path: Path) -> InstallOutcome:
        """Verify and stage a release file; it then runs in shadow (or is committed at once)."""
        assert self.slot is not None, "bind() the model slot first"
        with self._lock:
            try:
                return self._install(path)
            except (ReleaseError, ReleaseHealthError) as exc:
                self.alert("release_refused", f"release {path.name} refused", str(exc), path.name)
                raise

    def _install(self, path: Path) -> InstallOutcome:
        assert self.slot is not None
        roots = trusted_roots(self.config.trusted_root_keys)
        if not roots:
            raise UnknownReleaseKeyError(
                f"{path}: no trusted root keys configured ([release] trusted_root_keys)"
            )
        if self.trial is not None:
            self._end_trial(False, f"superseded by {path.name}")
        active = self.ledger.in_state(ReleaseState.ACTIVE)
        slot = SLOTS[1] if active is not None and active.slot == SLOTS[0] else SLOTS[0]
        shutil.rmtree(self.slots_dir / slot, ignore_errors=True)
        dest = slot_path(self.slots_dir, slot)
        verified = verify_release(
            path,
            roots,
            accepted=self.ledger.highest(),
            agent_version=agent_version(),
            extract_to=dest,
        )
        self.ledger.accept(verified, slot)
        candidate, diff, latency = self._health_gate(verified, dest)
        log.info("release %d (%s) passed the health gate", verified.version, candidate.version)
        self.trial = ShadowTrial(verified.version, candidate, self.config)
        state = ReleaseState.SHADOW
        if self.config.shadow_wafers == 0:
            self._end_trial(True, "no shadow trial configured")
            state = ReleaseState.ACTIVE
        return InstallOutcome(verified.version, candidate.version, slot, state, diff, latency)

    def _health_gate(self, release: VerifiedRelease, folder: Path) -> tuple[Model, float, float]:
        cfg = self.config

        def fail(reason: str) -> ReleaseHealthError:
            self.ledger.set_state(release.version, ReleaseState.ROLLED_BACK, reason)
            return ReleaseHealthError(f"release {release.version}: {reason}")

        try:
            model = load_model(folder, self.model_config, self.cache_dir)
        except WaferscopeError as exc:
            raise fail(f"the engine does not load: {exc}") from None
        try:
            inputs, _ = load_golden(folder)
            began = time.perf_counter()
            parity = golden_parity(folder, lambda x: model.infer(x).pattern_logits)
            latency = (time.perf_counter() - began) * 1000.0 / max(1, parity.count)
        except WaferscopeError as exc:
            model.runner.close()
            raise fail(f"golden set: {exc}") from None
        problem = ""
        if parity.max_abs_diff > cfg.golden_max_abs_diff:
            problem = (
                f"golden logits differ by up to {parity.max_abs_diff:.4f} "
                f"(allowed {cfg.golden_max_abs_diff})"
            )
        elif parity.top1_agreement < cfg.golden_min_agreement:
            problem = f"golden top-class agreement {parity.top1_agreement:.3f} is too low"
        elif latency > cfg.latency_budget_ms:
            problem = f"golden latency {latency:.1f} ms per wafer is over {cfg.latency_budget_ms}"
        if problem:
            model.runner.close()
            raise fail(problem)
        del inputs
        return model, parity.max_abs_diff, latency

    # ------------------------------------------------------------------ live wafers
    def classify(
        self, batch: list[PreparedWafer], model: Model, settings: PipelineSettings
    ) -> list[Classification]:
        """The worker's classification step: the active engine's results, the candidate in
        shadow, and a rollback to last-known-good when a release's engine fails at run time."""
        try:
            done = classify_batch(batch, model, settings)
        except Exception as exc:
            if not self._runtime_rollback(model, exc):
                raise
            assert self.slot is not None
            done = classify_batch(batch, self.slot.current, settings)
        with self._lock:
            trial = self.trial
            if trial is not None:
                trial.observe(done)
                verdict = trial.verdict()
                if verdict is not None:
                    self._end_trial(*verdict)
        return done

    def _end_trial(self, take_over: bool, reason: str) -> None:
        trial = self.trial
        assert trial is not None
        assert self.slot is not None
        previous = self.slot.current
        try:
            if take_over:
                self.slot.adopt(trial.candidate)
                self.ledger.commit(trial.version)
                self._release_model = trial.candidate
                log.info("release %d committed: %s", trial.version, reason)
            else:
                self.ledger.set_state(trial.version, ReleaseState.ROLLED_BACK, reason)
                trial.candidate.runner.close()
                log.warning("release %d rolled back: %s", trial.version, reason)
                self.alert(
                    "release_rolled_back",
                    f"release {trial.version} rolled back in shadow",
                    reason,
                    str(trial.version),
                )
        finally:
            self.trial = None  # last: whoever sees no trial sees its outcome recorded
        state = ReleaseState.ACTIVE if take_over else ReleaseState.ROLLED_BACK
        self._report(trial.report(self.store_device_id(), previous, state.value, reason))

    def roll_back(self, reason: str) -> bool:
        """Return to the last-known-good engine now (the hub's ROLLBACK); False if none."""
        with self._lock:
            active = self.ledger.in_state(ReleaseState.ACTIVE)
            if self.slot is None or active is None:
                return False
            self.slot.swap(self._fall_back(active.version, reason))
            back = self.ledger.in_state(ReleaseState.ACTIVE)
            self._release_model = self.slot.current if back is not None else None
            return True

    def _runtime_rollback(self, model: Model, exc: Exception) -> bool:
        with self._lock:
            if self.slot is None or model is not self._release_model:
                return False
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            return self.roll_back(f"the engine failed at run time: {first}")

    # ------------------------------------------------------------------ reporting
    def store_device_id(self) -> str:
        return self.alerts.device_id

    def _report(self, report: ShadowReport) -> None:
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:  # reporting must never stop a rollback or a commit
                log.exception("shadow report not sent")

    def alert(self, kind: str, title: str, message: str, key: str) -> None:
        """Raise a release alert (stored, then published with the other alerts)."""
        alert = self.alerts.make_alert(
            rule_id="release",
            kind=kind,
            severity="error",
            title=title,
            message=message,
            dedup_key=f"release:{kind}:{key}",
        )
        self.store.add_alerts([alert])

    def status(self) -> dict[str, object]:
        """For the panel and the CLI: every release this edge knows and the trial in progress."""
        trial = self.trial
        shadow = None
        if trial is not None:
            shadow = {
                "version": trial.version,
                "wafers": trial.wafers,
                "agreement": trial.agreement,
            }
        return {"releases": [asdict(r) for r in self.ledger.all()], "shadow": shadow}
