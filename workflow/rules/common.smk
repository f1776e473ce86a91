# Shared names for the rule files. Kept to constants: the pipeline's logic lives in bnaf/.
PY = "python -m bnaf"
# Training commands go through the GPU-slot wrapper (bnaf/core/gpu.py): it pins each local job
# to one visible GPU via CUDA_VISIBLE_DEVICES, leaves SLURM's assignment alone inside a SLURM
# job, and simply runs the command on a machine without GPUs.
PY_GPU = "python -m bnaf gpu -- python -m bnaf"


def rules_present(name):
    """True when workflow/rules/<name>.smk is part of this workflow (the parts' own tests use
    workflows with only some rule files)."""
    return os.path.exists(f"{workflow.basedir}/workflow/rules/{name}.smk")
