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


def add_arguments(parser) -> None:
    from tregsim.cli import options

    parser.add_argument(
        "experiment",
        nargs="?",
        help="experiment file (experiments/*.toml); omit with --synthetic",
    )
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
        help="analyses, comma separated, from ancova,ancova_huber,ancova_prognostic,welch,"
        "pooled_t,ranksum,responder_0.2,no_decline; the first is primary (default ancova,welch,"
        "ranksum,responder_0.2). ancova_huber is the same ANCOVA by Huber M-estimation (robust "
        "to far-off visits); ancova_prognostic adds each participant's mechanistic twin (predicted "
        "control outcome from the baseline MMTT, age and baseline day) as a covariate",
    )
    parser.add_argument(
        "--twin-draws",
        type=int,
        default=256,
        help="posterior × individual draws of each participant's twin for ancova_prognostic "
        "(default 256)",
    )
    eff = parser.add_argument_group("effect assumption (model-based)")
    eff.add_argument(
        "--effect-phi",
        type=float,
        help="fixed φ (potency × homing of infused Tregs, dimensionless) for the power curve; "
        "default: the posterior median if the posterior has φ, else the model's value",
    )
    options.add_posterior(
        eff,
        help=options.POSTERIOR_HELP + ". The power curve uses posterior medians of its "
        "parameters, the assurance curve one posterior draw per replicate trial (φ from its "
        "prior when the posterior does not hold it)",
    )
    eff.add_argument(
        "--phi",
        choices=("treatment-effect", "prior"),
        default="treatment-effect",
        help="the assurance curve's φ: 'treatment-effect' (default) draws a new trial's φ and "
        "the infused-cell kinetics from calibration/posteriors/treatment_effect.nc (the Treg "
        "trials' evidence, docs/treatment_effect.md); 'prior' draws φ from the model file's prior",
    )
    eff.add_argument(
        "--relative-effect",
        type=float,
        help="a fixed relative effect X instead of the treatment model: treated noise-free "
        "endpoint = (1 + X) × the patient's routine-care value (e.g. 0.3 = +30%%); no assurance "
        "curve",
    )
    eff.add_argument(
        "--effect-scale",
        choices=("auc", "auc-plus-1"),
        default="auc",
        help="scale of --relative-effect: 'auc' (default: treated AUC = (1 + X) × routine "
        "care's, a fraction of beta-cell function kept) or 'auc-plus-1' (treated AUC + 1 = "
        "(1 + X) × routine care's: a constant shift ln(1 + X) of ln(AUC + 1), what the "
        "closed-form ANCOVA sample size assumes)",
    )
    options.add_variability(parser)
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
    options.add_out(parser)
    options.add_seed(parser)
    options.add_set(parser)
    from tregsim.parallel import add_parallel_arguments

    add_parallel_arguments(parser, chunk_size=50)


def run(args) -> int:
    from tregsim.cli import options
    from tregsim.errors import ArgumentError
    from tregsim.trial.study import power_study

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
    if args.synthetic and args.set:
        raise ArgumentError(
            "--set needs an experiment (model-based mode)", field="set", fix="drop --set"
        )
    exp = None if args.synthetic else options.load_experiment_arg(args)
    study = power_study(
        exp,
        n_per_arm=args.n_per_arm,
        trials=args.trials,
        alpha=args.alpha,
        tests=args.tests.split(","),
        effect_phi=args.effect_phi,
        assurance=not args.no_assurance,
        endpoint_month=args.endpoint_month,
        phi=args.phi.replace("-", "_"),
        effect=args.effect,
        effect_sd=args.effect_sd,
        allocation=args.allocation,
        beta0=args.beta0,
        beta_age=args.beta_age,
        beta_cpep=args.beta_cpep,
        dropout=args.dropout,
        effect_patients=args.effect_patients,
        twin_draws=args.twin_draws,
        relative_effect=args.relative_effect,
        effect_scale=args.effect_scale.replace("-", "_"),
        **options.analysis_kwargs(args),
    )
    out = study.save(args.out)
    for line in study.report_lines():
        print(line, file=sys.stderr)
    print(
        f"wrote {out}/power.csv, mde.csv, power_curve.png, effect_distribution.png", file=sys.stderr
    )
    return 0
