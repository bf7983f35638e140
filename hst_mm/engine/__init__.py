"""Training support around mmengine's Runner (imports mmengine, not mmdet or mmseg)."""
