"""Live training in the editor.

How the main window wires it (everything but the first two lines is optional)::

    from gui.training import TrainingController, TrainingPanel, attach

    self.training = TrainingController(self.document, self)      # QObject
    self.training_panel = TrainingPanel(self.training)           # QWidget: put it in a dock
    attach(self.training, self.training_panel,
           train=self.actionTrain, pause=self.actionPause, stop=self.actionStop,
           scene=self.scene,                   # GraphScene: set_heat, set_badges,
                                               #   highlight_node, clear_highlight
           problems=self.problems_panel,       # set_runtime_problems, clear_runtime_problems
           status_bar=self.statusBar(),        # gets a permanent "CPU · 1234 steps/s" label
           selection=self.scene.selection_ids_changed)  # signal(list[str]) -> histograms

``attach`` makes ``actionTrain`` start (or resume) training, ``actionPause`` checkable
(checked = paused), ``actionStop`` stop; it enables each according to the controller's state.
After a run, ``continue_`` and ``restart`` (optional actions) start the next run from the
trained or from the initial weights; a plain Train does what ``controller.next_run()`` says
(continue, or restart when the graph or its training settings changed since), and its tip
says which.
Training runs in a child process (``core.remote``); closing the window must call
``controller.shutdown()``, which stops a run and ends that process.

The pieces, for finer wiring:

``TrainingController(document, parent=None, **training_overrides)``
    ``start(mode=None)`` (resumes when paused; ``mode`` CONTINUE or RESTART after a run,
    None for ``next_run().default``; False and ``failed`` when the graph or its settings
    are invalid), ``next_run()`` -> ``NextRun``, ``pause()``, ``resume()``,
    ``set_paused(bool)``, ``stop()`` (takes effect after the current step),
    ``wait_idle(timeout)``, ``state`` ("idle", "running", "paused", "stopping"),
    ``shutdown()``, ``reset_weights()``, ``save_weights(path)``, ``load_weights(path)``
    (``WeightsError`` naming the key or file), ``evaluate()`` ->
    ``core.training.ClassificationReport`` | None (waits), ``request_evaluation()`` (does not
    wait: ``evaluated`` or ``request_failed``), ``request_snapshot(node_id)``,
    ``set_scene(scene)``, ``set_problems(panel)``, ``status_text``, ``steps_per_second``.
    Signals: ``state_changed(str)``, ``run_started(RunInfo)``, ``steps_batch(list[StepEvent])``
    (10-20 Hz), ``epoch_done(EpochEvent)``, ``finished(DoneEvent)``, ``failed(node|None,
    message)``, ``status_text_changed(str)``, ``snapshot_ready(node, Snapshot)``,
    ``evaluated(report)``, ``weights_reset()``, ``request_failed(what, why)``,
    ``next_run_changed(NextRun)``.

``TrainingPanel(controller)``
    holds ``lossPlot`` (with its legend list ``lossLegend``), ``gradNormPlot`` (with a
    checkable layer list ``gradLayers`` and, for recurrent graphs, ``stateGradPlot``) on one
    page, ``trainProgress``, ``nextRun`` (continue or restart, in words), the histograms of a node
    (``show_node(node_id | None)``), the evaluation view, the heat legend (``legend``),
    weights buttons, and ``export_png(which, path)`` / ``export_csv(which, path)`` with
    ``which`` "loss" or "grad".

See docs/live-training.md.
"""
from __future__ import annotations

from PySide6.QtWidgets import QLabel

from gui.training.controller import (
    CONTINUE,
    IDLE,
    PAUSED,
    RESTART,
    RUNNING,
    STOPPING,
    NextRun,
    RunInfo,
    TrainingController,
)
from gui.training.heat import EXPLODING, VANISHING, GradientHeat, HeatLegend
from gui.training.panel import TrainingPanel

__all__ = ["TrainingController", "TrainingPanel", "RunInfo", "NextRun", "GradientHeat",
           "HeatLegend", "attach", "bind_actions", "show_next_run", "VANISHING", "EXPLODING",
           "IDLE", "RUNNING", "PAUSED", "STOPPING", "CONTINUE", "RESTART"]


def bind_actions(controller: TrainingController, train=None, pause=None, stop=None,
                 continue_=None, restart=None) -> None:
    """Connect QActions to the controller and keep their enabled / checked state in step.
    ``continue_`` and ``restart`` start a run after a run from the trained or the initial
    weights; the one a plain Train picks is shown in bold, and Train's tip says it."""
    if train is not None:
        train.triggered.connect(lambda *_: controller.start())
    if continue_ is not None:
        continue_.triggered.connect(lambda *_: controller.start(CONTINUE))
    if restart is not None:
        restart.triggered.connect(lambda *_: controller.start(RESTART))
    show_next_run(controller, continue_, restart, train)
    if pause is not None:
        pause.setCheckable(True)
        pause.triggered.connect(lambda checked=False: controller.set_paused(bool(checked)))
    if stop is not None:
        stop.triggered.connect(lambda *_: controller.stop())

    def on_state(state: str) -> None:
        if train is not None:
            train.setEnabled(state in (IDLE, PAUSED))
        if pause is not None:
            pause.setEnabled(state in (RUNNING, PAUSED))
            pause.setChecked(state == PAUSED)
        if stop is not None:
            stop.setEnabled(state in (RUNNING, PAUSED))

    controller.state_changed.connect(on_state)
    on_state(controller.state)


def show_next_run(controller: TrainingController, continue_=None, restart=None,
                  train=None) -> None:
    """Keep the Continue and Restart actions in step with ``controller.next_run()``:
    enabled when there are trained weights, the one a plain Train picks in bold; Train's
    tip (when given) says what it will do."""
    train_tip = train.toolTip() if train is not None else ""

    def on_next(choice: NextRun) -> None:
        for action, mode in ((continue_, CONTINUE), (restart, RESTART)):
            if action is None:
                continue
            action.setEnabled(choice.can_continue)
            font = action.font()
            font.setBold(choice.can_continue and choice.default == mode)
            action.setFont(font)
        if continue_ is not None:
            continue_.setText(f"&Continue from the trained weights (step {choice.step})"
                              if choice.can_continue else "&Continue from the trained weights")
        if train is not None:
            tip = choice.text or train_tip
            train.setToolTip(tip)
            train.setStatusTip(tip)

    controller.next_run_changed.connect(on_next)
    on_next(controller.next_run())


def _first_id(selection) -> str | None:
    if selection is None or isinstance(selection, str):
        return selection or None
    ids = list(selection)
    return ids[0] if len(ids) == 1 else None


def attach(controller: TrainingController, panel: TrainingPanel | None = None, *,
           train=None, pause=None, stop=None, scene=None, problems=None, status_bar=None,
           selection=None, continue_=None, restart=None) -> QLabel | None:
    """Wire the training controller (and its panel) into the main window; every part is
    optional. Returns the status-bar label when ``status_bar`` was given."""
    bind_actions(controller, train, pause, stop, continue_, restart)
    if scene is not None:
        controller.set_scene(scene)
    if problems is not None:
        controller.set_problems(problems)
    label = None
    if status_bar is not None:
        label = QLabel(controller.status_text)
        label.setObjectName("trainStatusBar")
        status_bar.addPermanentWidget(label)
        controller.status_text_changed.connect(label.setText)
    if selection is not None and panel is not None:
        selection.connect(lambda ids=None: panel.show_node(_first_id(ids)))
    return label
