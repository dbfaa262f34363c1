"""Hooks for mmengine's Runner (registered in ``detloss_plugin.registry.HOOKS``)."""
import copy
import os
import os.path as osp

from mmengine.hooks import CheckpointHook, Hook

from detloss_plugin.registry import HOOKS

__all__ = ['AtomicCheckpointHook', 'TrainingCurvesHook']


def _fsync(path: str) -> None:
    """Flush ``path`` (a file or a directory) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def _write_text_atomically(path: str, text: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same options) with which a kill at any moment
    leaves a run that ``--resume`` continues.

    mmengine 0.10.7 deletes the oldest kept checkpoint *before* writing the new one and
    writes the new one in place: with ``max_keep_ckpts=1``, a kill during the write
    leaves a partial ``iter_6.pth`` while ``last_checkpoint`` still names the deleted
    ``iter_3.pth``, and ``--resume`` fails. This hook, for local work dirs:

    1. writes the checkpoint to ``<name>.tmp`` in the same directory and flushes it to
       the disk;
    2. renames it to ``<name>`` (``os.replace``: atomic, the file is either the old
       one, absent, or complete);
    3. points ``last_checkpoint`` at it (written the same way, temporary file and
       rename);
    4. only then deletes the checkpoints beyond ``max_keep_ckpts``.

    A kill before step 2 leaves the previous checkpoint and ``last_checkpoint``
    untouched (and a stray ``.tmp``, overwritten by the next save of that step); a
    kill between the steps leaves a complete checkpoint that ``last_checkpoint`` names
    or one step older. Remote back-ends (``backend_args``) keep mmengine's behaviour;
    ``save_best`` checkpoints are written by mmengine's code as before.
    ``tools/train.py`` uses this hook in place of a plain ``CheckpointHook``.
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        from mmengine.dist import is_main_process
        from mmengine.fileio import LocalBackend
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        hub = runner.message_hub
        before = (copy.copy(getattr(self, 'keep_ckpt_ids', None)), self.last_ckpt,
                  hub.runtime_info.get('keep_ckpt_ids'), hub.runtime_info.get('last_ckpt'))
        outdated = None
        if self.max_keep_ckpts > 0 and not (
                len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        hub.update_info('last_ckpt', self.last_ckpt)
        try:   # the checkpoint holds the new bookkeeping (as mmengine's does)
            runner.save_checkpoint(
                self.out_dir, ckpt_filename + '.tmp', self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        except BaseException:
            # a failed write (disk full, an interrupt) leaves the bookkeeping as it was,
            # so that a later save of this step still deletes the outdated checkpoint
            self.keep_ckpt_ids, self.last_ckpt = before[0], before[1]
            for key, value in (('keep_ckpt_ids', before[2]), ('last_ckpt', before[3])):
                if value is None:
                    hub.runtime_info.pop(key, None)
                else:
                    hub.update_info(key, value)
            raise
        if not is_main_process():
            return
        tmp = self.last_ckpt + '.tmp'
        _fsync(tmp)
        os.replace(tmp, self.last_ckpt)
        _fsync(osp.dirname(osp.abspath(self.last_ckpt)))
        _write_text_atomically(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if outdated is not None and outdated != step:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            if osp.isfile(old):
                os.remove(old)


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
