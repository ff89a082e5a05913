"""``tregsim power``: power, sample size and assurance of virtual trials.

Model-based (an experiment file)::

    tregsim power experiments/nct06708780.toml --n-per-arm 5:60:5 --trials 2000 --seed 1 \\
        --effect-phi 20 --out out/power

Synthetic (a normal linear model on ln(AUC+1) with TrialNet placebo defaults; no simulator)::

    tregsim power --synthetic --effect 0.1 --effect-sd 0.05 --n-per-arm 5:60:5 --out out/p
"""

from __future__ import annotations

import sys

HELP = "power vs N per arm, sample size and assurance of virtual trials (power.csv, figures)"

_TESTS = ("ancova", "welch", "pooled_t", "ranksum", "responder_0.2", "no_decline")


def add_arguments(parser) -> None:
    from tregsim.parallel import add_parallel_arguments

    parser.add_argument(
        "experiment",
        nargs="?",
        help="experiment file (experiments/*.toml); omit with --synthetic",
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument(
        "--n-per-arm",
        default="5:60:5",
        help="patients enrolled per arm: start:stop:step (inclusive) or a comma list "
        "(default 5:60:5)",
    )
    parser.add_argument(
        "--trials", type=int, default=2000, help="replicate trials per curve (default 2000)"
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="two-sided level (0.05)")
    parser.add_argument(
        "--tests",
        default="ancova,welch,ranksum,responder_0.2",
        help=f"analyses, comma separated, from {','.join(_TESTS)}; the first is primary "
        "(default ancova,welch,ranksum,responder_0.2)",
    )
    eff = parser.add_argument_group("effect assumption (model-based)")
    eff.add_argument(
        "--effect-phi",
        type=float,
        help="fixed φ (potency × homing of infused Tregs, dimensionless) for the power curve; "
        "default: the posterior median if the posterior has φ, else the model's value",
    )
    eff.add_argument(
        "--posterior",
        help="posterior.nc of `tregsim calibrate`: the power curve uses posterior medians of its "
        "parameters, the assurance curve one posterior draw per replicate trial (φ from its "
        "prior when the posterior does not hold it)",
    )
    parser.add_argument(
        "--no-assurance",
        action="store_true",
        help="skip the assurance curve (φ from its prior, or the --posterior draws)",
    )
    parser.add_argument(
        "--endpoint-month",
        type=float,
        default=12.0,
        help="endpoint visit, months after baseline (default 12; a visit of the experiment)",
    )
    syn = parser.add_argument_group("synthetic mode")
    syn.add_argument(
        "--synthetic",
        action="store_true",
        help="normal linear model on ln(AUC+1) (TrialNet placebo defaults) instead of the ODE "
        "model",
    )
    syn.add_argument(
        "--effect",
        type=float,
        default=0.1,
        help="true effect, difference of ln(AUC+1) (nmol/L AUC); exp(effect) = ratio of "
        "geometric means of (AUC+1) (default 0.1 ≈ +10.5%%)",
    )
    syn.add_argument(
        "--effect-sd",
        type=float,
        default=0.05,
        help="SD of the effect across replicate trials for the assurance curve (default 0.05; "
        "0 = no assurance curve)",
    )
    al = parser.add_argument_group("allocation")
    al.add_argument(
        "--allocation",
        choices=("experiment", "randomized", "logistic"),
        default="experiment",
        help="randomized 1:1, logistic (non-randomized, see docs/trials.md) or as the "
        "experiment file says (default; randomized in --synthetic mode)",
    )
    al.add_argument("--beta0", type=float, default=0.0, help="logistic allocation intercept")
    al.add_argument(
        "--beta-age", type=float, default=0.5, help="log-odds of Treg arm per SD of age (0.5)"
    )
    al.add_argument(
        "--beta-cpep",
        type=float,
        default=0.5,
        help="log-odds of Treg arm per SD of ln(baseline C-peptide + 1) (0.5)",
    )
    parser.add_argument(
        "--dropout", type=float, default=0.0, help="probability of no endpoint (default 0)"
    )
    parser.add_argument(
        "--effect-patients",
        type=int,
        default=16,
        help="model-based: true effect of each replicate from the paired (both-arm) simulation "
        "of its first K enrolled patients; the other patients are simulated in their own arm "
        "only, which nearly halves the work (default 16; 0 = all patients)",
    )
    add_parallel_arguments(parser, chunk_size=50)


def _validate(args):
    from tregsim.errors import ArgumentError
    from tregsim.trial.power import parse_grid

    if args.seed < 0:
        raise ArgumentError(
            f"--seed must be ≥ 0, got {args.seed}", field="--seed", fix="give a whole number ≥ 0"
        )
    if args.trials < 10:
        raise ArgumentError(
            f"--trials must be ≥ 10, got {args.trials}",
            field="--trials",
            fix="use e.g. --trials 2000",
        )
    if not 0 < args.alpha < 1:
        raise ArgumentError(
            f"--alpha must be in (0, 1), got {args.alpha}", field="--alpha", fix="use e.g. 0.05"
        )
    if not 0 <= args.dropout < 1:
        raise ArgumentError(
            f"--dropout must be in [0, 1), got {args.dropout}",
            field="--dropout",
            fix="use e.g. 0.1",
        )
    tests = tuple(t.strip() for t in args.tests.split(",") if t.strip())
    bad = [t for t in tests if t not in _TESTS]
    if not tests or bad:
        raise ArgumentError(
            f"unknown analyses {bad or tests}",
            field="--tests",
            fix=f"use a comma list of {', '.join(_TESTS)}",
        )
    if args.synthetic and args.experiment:
        raise ArgumentError(
            "--synthetic takes no experiment file",
            field="experiment",
            fix="drop the experiment or drop --synthetic",
        )
    if not args.synthetic and not args.experiment:
        raise ArgumentError(
            "no experiment file given",
            field="experiment",
            fix="pass experiments/<name>.toml, or --synthetic",
        )
    if args.synthetic and (args.effect_phi is not None or args.posterior):
        raise ArgumentError(
            "--effect-phi/--posterior need an experiment (model-based mode)",
            field="--effect-phi",
            fix="use --effect in --synthetic mode",
        )
    if args.effect_phi is not None and not args.effect_phi >= 0:
        raise ArgumentError(
            f"--effect-phi must be ≥ 0, got {args.effect_phi}",
            field="--effect-phi",
            fix="φ is a dimensionless potency × homing factor ≥ 0, e.g. 20",
        )
    if args.effect_patients < 0:
        raise ArgumentError(
            f"--effect-patients must be ≥ 0, got {args.effect_patients}",
            field="--effect-patients",
            fix="use e.g. 16, or 0 for every enrolled patient",
        )
    if args.effect_sd < 0:
        raise ArgumentError(
            f"--effect-sd must be ≥ 0, got {args.effect_sd}",
            field="--effect-sd",
            fix="use 0 for no assurance curve",
        )
    return parse_grid(args.n_per_arm), tests


def _allocation(args, exp):
    from tregsim.trial.allocation import LogisticAllocation, check_allocation

    kind = args.allocation
    if kind == "experiment":
        kind = "randomized"
        if exp is not None and str(exp.trial.get("allocation", "")).startswith("non"):
            kind = "logistic"
    if kind == "randomized":
        return None, "randomized 1:1"
    model = LogisticAllocation(args.beta0, args.beta_age, args.beta_cpep)
    check_allocation(model)
    return model, (
        f"non-randomized logistic (β0 {model.beta0:g}, β_age {model.beta_age:g}, "
        f"β_c {model.beta_cpep:g})"
    )


def _csv(tables: dict, meta: dict) -> str:
    """One row per (curve, N per arm); assumption columns repeated on every row."""
    import numpy as np

    lines = []
    header = None
    for curve, tab in tables.items():
        cols = {"curve": curve, **meta[curve], **tab}
        keys = list(cols)
        if header is None:
            header = keys
            lines.append(",".join(header))
        k = len(tab["n_per_arm"])
        for i in range(k):
            row = []
            for h in header:
                v = cols[h]
                v = v[i] if isinstance(v, np.ndarray) else v
                if isinstance(v, float | np.floating):
                    row.append(f"{v:.6g}")
                else:
                    s = str(v)
                    row.append(f'"{s}"' if "," in s else s)
            lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def _effect_assumption(args, exp):
    """(theta, fixed_text, draws, assurance_text) of a model-based run; validates inputs."""
    import numpy as np

    from tregsim.errors import ArgumentError
    from tregsim.rng import block_generator

    months = np.asarray(exp.visit_months, dtype=float)
    if not np.any(np.isclose(months[1:], args.endpoint_month)):
        raise ArgumentError(
            f"month {args.endpoint_month:g} is not a post-baseline visit of {exp.path}",
            field="--endpoint-month",
            fix=f"use one of {', '.join(f'{m:g}' for m in months[1:])}",
        )
    phi_spec = exp.model.spec.parameters.get("phi")
    theta: dict = {}
    draws: dict = {}
    post_names: list[str] = []
    if args.posterior:
        from tregsim.cohort import posterior_option, posterior_rows

        post, _ = posterior_option(args.posterior, exp.model)
        post_names = sorted(post)
        # the fixed curve: every posterior parameter at its posterior median
        theta.update({k: float(np.median(v)) for k, v in post.items()})
        # assurance: replicate trial r uses posterior draw r mod n_draws (as cohorts do)
        draws.update(posterior_rows(post, 0, args.trials))
    if args.effect_phi is not None:
        theta["phi"] = float(args.effect_phi)
    elif "phi" not in theta and phi_spec is not None:
        theta["phi"] = float(phi_spec.value)
    if post_names:
        fixed_text = (
            "posterior medians ("
            + ", ".join(f"{k} = {theta[k]:.3g}" for k in post_names)
            + ")"
            + (f"; φ = {theta['phi']:g}" if "phi" in theta and "phi" not in post_names else "")
        )
        if args.effect_phi is not None and "phi" in post_names:
            fixed_text += f"; φ = {args.effect_phi:g} (given)"
    else:
        fixed_text = f"φ = {theta['phi']:g}" if "phi" in theta else "model defaults"
    assurance_text = ""
    if not args.no_assurance:
        parts = []
        if "phi" not in draws and phi_spec is not None and phi_spec.prior is not None:
            g = block_generator(args.seed, "trial.prior.phi", 0)
            draws["phi"] = np.asarray(phi_spec.prior.sample(g, args.trials), dtype=float)
            parts.append(f"φ ~ prior {phi_spec.prior.describe()}")
        if post_names:
            parts.append(f"{', '.join(post_names)} ~ posterior ({args.posterior})")
        assurance_text = "; ".join(parts)
    theta = theta or None
    draws = draws or None
    return theta, fixed_text, draws, assurance_text


def run(args) -> int:
    import numpy as np

    from tregsim import io
    from tregsim.checkpoint import prepare_output_dir
    from tregsim.parallel import parallel_options
    from tregsim.trial import design
    from tregsim.trial.power import closed_form_mde_table, simulated_power, variance_components

    grid, tests = _validate(args)
    n_max = int(grid.max())
    exp = None
    inputs = {}
    if not args.synthetic:
        from tregsim.experiment import load_experiment

        exp = load_experiment(args.experiment)
        inputs = {k: str(v) for k, v in exp.input_files().items()}
        if args.posterior:
            inputs["posterior"] = args.posterior
        theta, fixed_text, draws, assurance_text = _effect_assumption(args, exp)
    alloc, alloc_text = _allocation(args, exp)
    settings = {
        "mode": "synthetic" if args.synthetic else "model",
        "n_per_arm": [int(x) for x in grid],
        "trials": args.trials,
        "alpha": args.alpha,
        "tests": list(tests),
        "allocation": alloc_text,
        "dropout": args.dropout,
        "endpoint_month": args.endpoint_month,
        "effect_phi": args.effect_phi,
        "effect": args.effect if args.synthetic else None,
        "effect_sd": args.effect_sd if args.synthetic else None,
        "no_assurance": args.no_assurance,
        "effect_patients": None if args.synthetic else args.effect_patients,
    }
    manifest = io.build_manifest(
        command="power",
        seed=args.seed,
        inputs=inputs,
        settings=settings,
        argv=["tregsim", *sys.argv[1:]],
    )
    out = prepare_output_dir(args.out, manifest, overwrite=args.overwrite)

    datasets = {}
    meta = {}
    common = {
        "alpha": args.alpha,
        "allocation": alloc_text,
        "dropout_fraction": args.dropout,
    }
    if args.synthetic:
        common["endpoint"] = "synthetic ln(AUC+1) model, TrialNet placebo month-12 defaults"
        datasets["fixed"] = design.synthetic_trials(
            args.seed,
            args.trials,
            n_max,
            effect=args.effect,
            allocation=alloc,
            dropout=args.dropout,
        )
        meta["fixed"] = {**common, "effect_assumption": datasets["fixed"].effect_label}
        if args.effect_sd > 0 and not args.no_assurance:
            eff = design.draw_effects(args.seed, args.trials, args.effect, args.effect_sd)
            datasets["assurance"] = design.synthetic_trials(
                args.seed, args.trials, n_max, effect=eff, allocation=alloc, dropout=args.dropout
            )
            meta["assurance"] = {**common, "effect_assumption": datasets["assurance"].effect_label}
        fixed_text = (
            f"effect ln-ratio {args.effect:g} ({100 * np.expm1(args.effect):+.1f}% (AUC+1))"
        )
        assumption = fixed_text
        if "assurance" in datasets:
            assumption += f"; assurance: effect ~ N({args.effect:g}, {args.effect_sd:g}²)"
    else:
        from tregsim.trial.virtual import virtual_trials

        popt = parallel_options(args)
        common["endpoint"] = (
            f"MMTT 2-h AUC mean C-peptide at month {args.endpoint_month:g}, {exp.name}"
        )
        kw = dict(
            n_trials=args.trials,
            n_max_per_arm=n_max,
            seed=args.seed,
            allocation=alloc,
            dropout=args.dropout,
            endpoint_month=args.endpoint_month,
            effect_patients=args.effect_patients or None,
            out_dir=out,
            **popt,
        )
        datasets["fixed"] = virtual_trials(exp, theta=theta, label=fixed_text, stage="fixed", **kw)
        meta["fixed"] = {**common, "effect_assumption": fixed_text}
        assumption = fixed_text
        if draws is not None and not args.no_assurance:
            datasets["assurance"] = virtual_trials(
                exp, theta_draws=draws, label=assurance_text, stage="assurance", **kw
            )
            meta["assurance"] = {**common, "effect_assumption": assurance_text}
            assumption += f"; assurance: {assurance_text}"
    results = {
        k: simulated_power(d, grid, tests=tests, alpha=args.alpha, progress=True)
        for k, d in datasets.items()
    }
    tables = {k: r.table() for k, r in results.items()}
    for k, d in datasets.items():
        te = np.asarray(d.true_effect, dtype=float)
        te_mean = float(te[np.isfinite(te)].mean()) if np.isfinite(te).any() else float("nan")
        meta[k]["mean_true_effect_ln_auc_plus_1"] = te_mean
        meta[k]["mean_true_effect_percent_auc_plus_1"] = float(100 * np.expm1(te_mean))
    io.write_text(out / "power.csv", _csv(tables, meta))

    vc = variance_components(datasets["fixed"])
    mde = closed_form_mde_table(vc["sd"], vc["rho"], grid, alpha=args.alpha)
    mde_meta = {
        "sd_ln_auc_plus_1_control": vc["sd"],
        "rho_covariates": vc["rho"],
        "source": "closed-form noncentral t; SD and rho estimated from the simulated control arm",
    }
    io.write_text(out / "mde.csv", _csv({"closed_form": mde}, {"closed_form": mde_meta}))

    effect_rows = ["curve,trial,true_effect_ln_auc_plus_1,true_effect_percent_auc_plus_1,phi"]
    for k, d in datasets.items():
        phis = d.info.get("phi")
        for r, te in enumerate(np.asarray(d.true_effect, dtype=float)):
            phi = f"{phis[r]:.10g}" if phis is not None else ""
            effect_rows.append(f"{k},{r},{te:.10g},{100 * np.expm1(te):.8g},{phi}")
    io.write_text(out / "effect_draws.csv", "\n".join(effect_rows) + "\n")

    from tregsim.plots import trial as tplot

    label = (
        f"{alloc_text}; endpoint {common['endpoint']}; α = {args.alpha:g}; "
        f"R = {args.trials} trials/curve; dropout {args.dropout:g}"
    )
    ax = tplot.plot_power_curve(
        tables,
        tests=tests[:1],
        alpha=args.alpha,
        assumption=f"{assumption}\n{label}",
        title="Virtual-trial power vs N per arm",
    )
    tplot.save(ax.figure, out / "power_curve.png")
    ref = datasets.get("assurance", datasets["fixed"])
    fixed_eff = meta["fixed"]["mean_true_effect_ln_auc_plus_1"]
    fig = tplot.effect_figure(
        ref.true_effect,
        phi=ref.info.get("phi"),
        fixed_effect_ln=fixed_eff,
        assumption=assumption,
    )
    tplot.save(fig, out / "effect_distribution.png")

    extra = {}
    for k, r in results.items():
        extra[k] = {
            "n_per_arm_for_80pct": r.n_for_power(0.8, tests[0]),
            "n_per_arm_for_90pct": r.n_for_power(0.9, tests[0]),
        }
        if k in datasets and "n_failed_solves" in datasets[k].info:
            extra[k]["n_failed_solves"] = datasets[k].info["n_failed_solves"]
    manifest["settings"] = settings
    manifest["summary"] = extra
    io.write_json(out / io.MANIFEST, manifest)

    t0 = tests[0]
    for k, r in results.items():
        pw = r.power(t0)
        lo, hi = r.interval(t0)
        what = "power" if k == "fixed" else "assurance"
        cells = ", ".join(
            f"N={n}: {p:.3f} [{a:.3f}, {b:.3f}]" for n, p, a, b in zip(grid, pw, lo, hi)
        )
        print(f"{what} ({t0}, {meta[k]['effect_assumption']}): {cells}", file=sys.stderr)
        print(
            f"  N per arm for 80%: {extra[k]['n_per_arm_for_80pct']}, "
            f"for 90%: {extra[k]['n_per_arm_for_90pct']} (None = beyond the grid)",
            file=sys.stderr,
        )
    n_ref = 10 if 10 in grid else int(grid[0])
    i = int(np.nonzero(grid == n_ref)[0][0])
    print(
        f"minimal detectable effect at {n_ref} per arm (80% power, ANCOVA, SD "
        f"{vc['sd']:.3f}, ρ {vc['rho']:.2f} from the simulated control arm): "
        f"{mde['mde80_ancova_ln_auc_plus_1'][i]:.3f} ln(AUC+1) = "
        f"{mde['mde80_ancova_percent_auc_plus_1'][i]:+.0f}% (AUC+1)",
        file=sys.stderr,
    )
    print(
        f"wrote {out}/power.csv, mde.csv, power_curve.png, effect_distribution.png", file=sys.stderr
    )
    return 0
