"""Hooks for mmengine's Runner (registered in ``detloss_plugin.registry.HOOKS``)."""
import os.path as osp

from mmengine.hooks import Hook

from detloss_plugin.registry import HOOKS

__all__ = ['TrainingCurvesHook']


@HOOKS.register_module()
class TrainingCurvesHook(Hook):
    """Redraw ``<work_dir>/<filename>`` (loss and val mAP curves) after every
    validation and at the end of training, from the run's ``LocalVisBackend`` logs.

    Use: ``custom_hooks = [dict(type='detloss_plugin.TrainingCurvesHook')]`` (the
    config needs ``vis_backends = [dict(type='LocalVisBackend')]``, as mmdet's default
    runtime has). Only the main process draws. Priority ``VERY_LOW``: it runs after the
    logger hook has written the validation metrics.
    """

    priority = 'VERY_LOW'

    def __init__(self, filename: str = 'curves.png') -> None:
        self.filename = filename

    def _draw(self, runner) -> None:
        from mmengine.dist import is_main_process
        if not is_main_process():
            return
        from .plots import plot_curves
        out = osp.join(runner.work_dir, self.filename)
        plot_curves(runner.work_dir, out, title=runner.experiment_name)
        runner.logger.info(f'training curves: {out}')

    def after_val_epoch(self, runner, metrics=None) -> None:
        # only while training (runner.val() alone has no curves to draw); reading
        # runner.train_loop would build the loop, so look at the private attribute.
        from mmengine.runner import BaseLoop
        if isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            self._draw(runner)

    def after_train(self, runner) -> None:
        self._draw(runner)
