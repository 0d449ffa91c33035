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
    "apt": ("fsadbench.methods.apt.model:APT", {}),
    "patchcore": ("fsadbench.methods.patchcore.model:PatchCoreMethod", {}),
    "padim": ("fsadbench.methods.padim.model:PadimMethod", {}),
    "spade": ("fsadbench.methods.spade.model:SpadeMethod", {}),
    "anomalydino": ("fsadbench.methods.anomalydino.model:AnomalyDINOMethod", {}),
    "anomalyclip": ("fsadbench.methods.anomalyclip.model:AnomalyCLIP", {}),
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


def register_builtins(methods, datasets) -> None:
    for name, (target, opts) in BUILTIN_METHODS.items():
        methods.add(name, target, options=opts)
    for name, (target, opts) in BUILTIN_DATASETS.items():
        datasets.add(name, target, options=opts)
