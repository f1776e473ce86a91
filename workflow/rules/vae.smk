# Variational auto-encoders with amortised B-NAF posteriors (Section 5.4, Table 2): train every
# (dataset, config, seed) that params vae.yaml lists (the K x H grid on MNIST, the best shape and
# the plain VAE elsewhere), evaluate -ELBO and the importance-sampled NLL, count the Section 5.4
# size claims, then assemble Table 2. Datasets whose download status says "unavailable"
# (checkpoint download in data.smk, read by available(name)) appear in the table as not run.
VAE = config["vae"]
VAE_RUN = "results/vae/{dataset}/{vconfig}/seed{seed}"


wildcard_constraints:
    vconfig=r"vae|bnaf-K\d+-H\d+d",


localrules:
    count_vae,
    table2,


def vae_configs(dataset):
    shapes = VAE["grid"] if dataset == VAE["grid_dataset"] else [VAE["best"]]
    names = [f"bnaf-K{s['flows']}-H{s['hidden_factor']}d" for s in shapes]
    return list(dict.fromkeys((["vae"] if VAE["plain_vae"] else []) + names))


def vae_metrics(wildcards):
    return [
        f"results/vae/{d}/{c}/seed{s}/metrics.json"
        for d in VAE["datasets"]
        if available(d)
        for c in vae_configs(d)
        for s in VAE["seeds"]
    ]


rule vae:
    input:
        status="data/raw/{dataset}.status.json",
    output:
        metrics=f"{VAE_RUN}/metrics.json",
        model=f"{VAE_RUN}/model.pt",
    log:
        "logs/vae/{dataset}/{vconfig}/seed{seed}.log",
    params:
        out=VAE_RUN,
    threads: VAE["resources"]["threads"]
    resources:
        mem_mb=VAE["resources"]["mem_mb"],
        runtime=VAE["resources"]["runtime"],
        gpu=VAE["resources"]["gpu"],
    shell:
        "{PY_GPU} vae --params {PARAMS}/vae.yaml --dataset {wildcards.dataset}"
        " --config {wildcards.vconfig} --seed {wildcards.seed} --status {input.status}"
        " --out {params.out} >> {log} 2>&1"


rule count_vae:
    output:
        "results/vae/count.json",
    log:
        "logs/count_vae/count.log",
    shell:
        "{PY} count-vae --out {output} > {log} 2>&1"


rule table2:
    input:
        metrics=vae_metrics,
        counts="results/vae/count.json",
        status=expand("data/raw/{dataset}.status.json", dataset=VAE["datasets"]),
    output:
        md=report("reports/table2.md", caption="../report/table2.rst", category="Tables"),
        json="reports/table2.json",
    log:
        "logs/table2/table2.log",
    shell:
        "{PY} table table2 --params {PARAMS}/vae.yaml --count {input.counts} --out {output.md}"
        " > {log} 2>&1"
