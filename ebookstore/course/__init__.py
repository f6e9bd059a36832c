"""The course: what only the notebooks, the exercises and their grading need.

  notebook      the notebooks' environment cell and shared helpers (start_notebook, check, job_states)
  grading       check("exNN") / `ebookstore check`: runs an exercise's checks, prints ✓/✗ and hints
  checks/       the checks of each exercise (exNN.py) and what they share (common.py)
  specimens     throwaway processes to practise on (S, R, T, Z, a listener and its client)
  demo_jobs     small jobs for the demos (nap, flaky, reject, …)
  signal_demo   a program with a handler per signal (notebook 07)
  measure       latency and round-trip measurement (notebook 01, make bench)

It uses the store and the runtime; neither of them imports it.
"""
