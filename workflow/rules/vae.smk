# Variational auto-encoders with amortised B-NAF posteriors (Section 5.4, Table 2): train every
# run of bnaf.vae.runs (the K x H grid on the grid dataset, the best shape and the plain VAE
# elsewhere), evaluate -ELBO and the importance-sampled NLL, count the Section 5.4 size claims,
# then assemble Table 2. Datasets whose download status says "unavailable" are named not run.
from bnaf.vae import runs as vae
from bnaf.vae.params import load_vae

VAE = load_vae(f"{PARAMS}/vae.yaml")


localrules:
    vae_count,
    vae_table,


rule vae_train:
    input:
        status=ancient("data/raw/{dataset}.status.json"),  # re-checked: no retraining
    output:
        metrics=f"{vae.RUN}/metrics.json",
        model=f"{vae.RUN}/model.pt",
    log:
        "logs/vae_train/{dataset}/{config}/seed{seed}.log",
    wildcard_constraints:
        config=vae.CONFIG_PATTERN,
    threads: VAE.resources.threads
    resources:
        mem_mb=VAE.resources.mem_mb,
        runtime=VAE.resources.runtime,
        gpu=VAE.resources.gpu,
    shell:
        "{PY_GPU} vae train --params {PARAMS}/vae.yaml --dataset {wildcards.dataset} --config"
        " {wildcards.config} --seed {wildcards.seed} --status {input.status}"
        " --out $(dirname {output.metrics})"
        " >> {log} 2>&1"


rule vae_count:
    output:
        vae.COUNT,
    log:
        "logs/vae_count/count.log",
    shell:
        "{PY} vae count --out {output} > {log} 2>&1"


rule vae_table:
    input:
        metrics=lambda w: [f"{r.path}/metrics.json" for r in vae.runs(VAE) if available(r.dataset)],
        counts=vae.COUNT,
        status=expand("data/raw/{dataset}.status.json", dataset=VAE.datasets),
    output:
        md=report("reports/table2.md", caption="../report/table2.rst", category="Tables"),
        json="reports/table2.json",
    log:
        "logs/vae_table/table2.log",
    shell:
        "{PY} vae table --params {PARAMS}/vae.yaml --count {input.counts} --out {output.md}"
        " > {log} 2>&1"
