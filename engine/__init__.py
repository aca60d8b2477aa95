"""What codirector does, built on the log. One sub-package per job:

    recording/   how the engine writes: the run writer (events, blobs first) and the call recorder
    agents/      the paper's agents: prompts in our words, output schemas, validated calls
    views/       projections of the log (read side): memory, run state, audit, history, report, pictures
    loop/        Algorithm 1: story files, the per-shot loop, retrieval, runs, branches, replay
    director/    the Co-Director: briefs, the bandit, its agents, one branch per pull
    evaluation/  judges, consistency metrics, evaluation of a branch, the benchmark harness
    workspace.py the three storage handles every service takes (event store, blobs, vector indexes)
    studio.py    the Python API facade the CLI calls; it builds a Workspace and delegates
    results.py   the typed values Studio's own queries return (and where every other result lives)
    demo.py      the offline showcase

Imports point one way: recording <- agents <- views <- loop <- director / evaluation <- studio, demo.
Nothing under engine/ imports ``studio`` or the CLI; models are reached only through the interfaces
in ``codirector.generators``.
"""
