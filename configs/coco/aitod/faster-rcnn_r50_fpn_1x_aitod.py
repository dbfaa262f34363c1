_base_ = './_base_aitod.py'
# The IoU baseline on AI-TOD (the paper: 11.1 AP).
