"""Random graphs of torch futures from Python: sources, wraps of sources and of
wraps, completed with values or errors by several threads in random orders.
Each wrap completes exactly once, with None or its source's very exception,
on the thread that completed its source."""

import threading

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bounded
import torch_ext


@st.composite
def graphs(draw):
    sources = draw(st.integers(1, 6))
    threads = draw(st.integers(1, 3))
    parents = []  # node i >= sources is a wrap of node parents[i - sources]
    for index in range(sources, sources + draw(st.integers(0, 25))):
        parents.append(draw(st.integers(0, index - 1)))
    fails = draw(st.lists(st.booleans(), min_size=sources, max_size=sources))
    owner = draw(st.lists(st.integers(0, threads - 1), min_size=sources, max_size=sources))
    order = draw(st.permutations(range(sources)))
    return sources, threads, parents, fails, owner, order


@settings(max_examples=60, deadline=None)
@given(graphs())
def test_each_wrap_completes_once_with_its_sources_outcome_on_its_thread(graph):
    sources, threads, parents, fails, owner, order = graph
    futures = [torch.futures.Future() for _ in range(sources)]
    roots = list(range(sources))
    for parent in parents:
        futures.append(torch_ext.wrap_future(futures[parent]))
        roots.append(roots[parent])
    seen = [[] for _ in futures]
    for index, future in enumerate(futures):
        torch_ext.on_complete(future, lambda _, index=index: seen[index].append(threading.get_ident()))
    errors = [ValueError(f"source {s}") if fails[s] else None for s in range(sources)]
    completer = [None] * sources

    def complete(thread):
        for s in order:
            if owner[s] == thread:
                completer[s] = threading.get_ident()
                if errors[s] is None:
                    futures[s].set_result(torch.ones(1))
                else:
                    futures[s].set_exception(errors[s])

    workers = [threading.Thread(target=complete, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        bounded.join(worker, "a completing thread")

    for index in range(sources, len(futures)):
        root = roots[index]
        assert seen[index] == [completer[root]], f"wrap {index} of source {root}"
        what = f"wrap {index} of source {root}"
        if errors[root] is None:
            assert bounded.wait(futures[index], what) is None
        else:
            try:
                bounded.wait(futures[index], what)
            except ValueError as raised:
                assert raised is errors[root]
            else:
                raise AssertionError(f"wrap {index} did not fail with {errors[root]!r}")
