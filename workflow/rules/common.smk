# Shared names for the rule files. Kept to constants: the pipeline's logic lives in bnaf/.
PY = "python -m bnaf"
