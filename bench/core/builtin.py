"""Lazy table of the built-in plugins: name -> "module:attr" (+ default options).

Nothing here is imported until the name is used, so listing names is cheap.
"""

BUILTIN_METHODS = {
    "memory": ("fsadbench.methods.memory:MemoryBank", {}),
    "winclip": ("fsadbench.methods.winclip.model:WinCLIP", {}),
    "promptad": ("fsadbench.methods.promptad:PromptAD", {}),
    "promptad-g": ("fsadbench.methods.promptad:PromptAD", {"generic_only": True}),
    "anople": ("fsadbench.methods.anople.model:AnoPLe", {"multi_class": True}),
    "anople-oc": ("fsadbench.methods.anople.model:AnoPLe", {"multi_class": False}),
    # AnoPLe Table 2's "MaPLe + DRAEM": AnoPLe's parts reduced to MaPLe's prompts (text -> vision
    # coupling, no own visual contexts), DRAEM pixel pseudo anomalies only, no multi-view, no decoder
    "maple-draem": ("fsadbench.methods.anople.model:AnoPLe",
                    {"interaction": "text_to_visual", "n_ctx_visual": 0, "pseudo_anomalies": "pixel",
                     "crop_grid": 1, "view_signal": False, "align": "none", "decoder": False}),
    "apt": ("fsadbench.methods.apt.model:APT", {}),
    "patchcore": ("fsadbench.methods.patchcore.model:PatchCoreMethod", {}),
    "padim": ("fsadbench.methods.padim.model:PadimMethod", {}),
    "fastrecon": ("fsadbench.methods.fastrecon.model:FastReconMethod", {}),
    "spade": ("fsadbench.methods.spade.model:SpadeMethod", {}),
    "anomalydino": ("fsadbench.methods.anomalydino.model:AnomalyDINOMethod", {}),
    "anomalyclip": ("fsadbench.methods.anomalyclip.model:AnomalyCLIP", {}),
    "inctrl": ("fsadbench.methods.inctrl.model:InCTRL", {}),
    "regad": ("fsadbench.methods.regad.model:RegAD", {}),
}

BUILTIN_DATASETS = {
    "synthetic": ("fsadbench.datasets.synthetic:SyntheticDataset", {}),
    # the same generator with another seed: the auxiliary set of the zero-shot transfer pipeline check
    "synthetic-aux": ("fsadbench.datasets.synthetic:SyntheticDataset", {"seed": 1}),
    "mvtec": ("fsadbench.datasets.mvtec:MVTecAD", {}),
    "visa": ("fsadbench.datasets.visa:VisA", {}),
    "mpdd": ("fsadbench.datasets.mpdd:MPDD", {}),
    "sdd": ("fsadbench.datasets.kolektor:KolektorSDD", {}),
    "sdd2": ("fsadbench.datasets.kolektor:KolektorSDD2", {}),
    "cvc-colondb": ("fsadbench.datasets.cvc:CVCColonDB", {}),
    "cvc-clinicdb": ("fsadbench.datasets.cvc:CVCClinicDB", {}),
    "cvc": ("fsadbench.datasets.cvc:CVCColonDB", {}),  # the APT paper's "CVC" column is ColonDB
    "folder": ("fsadbench.datasets.folder:FolderDataset", {}),
}


# paper table layouts (``paper-table --list``): name -> "module:attr" of a Layout
BUILTIN_LAYOUTS = {
    "apt_table1": ("fsadbench.reports.paper.layouts:APT_TABLE1", {}),
    "apt_table2": ("fsadbench.reports.paper.layouts:APT_TABLE2", {}),
    "apt_table3": ("fsadbench.reports.paper.layouts:APT_TABLE3", {}),
    "anople_table1": ("fsadbench.reports.paper.anople:TABLE1", {}),
    "anople_table2": ("fsadbench.reports.paper.anople:TABLE2", {}),
    "anople_table3": ("fsadbench.reports.paper.anople:TABLE3", {}),
    "anople_table4": ("fsadbench.reports.paper.anople:TABLE4", {}),
    "anople_table5": ("fsadbench.reports.paper.anople:TABLE5", {}),
}


def register_builtins(methods, datasets, layouts=None) -> None:
    for name, (target, opts) in BUILTIN_METHODS.items():
        methods.add(name, target, options=opts)
    for name, (target, opts) in BUILTIN_DATASETS.items():
        datasets.add(name, target, options=opts)
    for name, (target, opts) in (BUILTIN_LAYOUTS.items() if layouts is not None else ()):
        layouts.add(name, target, options=opts)
