"""The ebook store of the course *Background Jobs and Process Management*.

Three parts, one folder each; a part imports only the parts above it in this list.

The store (this folder)
  config        settings from environment variables
  credentials   secrets generated once per state folder (Redis and dashboard passwords, 0600 files)
  store         users, ebooks, purchases (SQLite); a purchase is one transaction
  reports       sales statistics
  mail          the store's emails, their (idempotent) delivery, the outbox of delivered mail
  queues        queue configuration (queues.toml), Redis connection, enqueueing (JSON)
  jobs          the background jobs workers run, and the purchase flow that enqueues them
  outbox        jobs recorded in the purchase's transaction, relayed to Redis
  backends/     the queue adapter: EBOOKSTORE_QUEUE_BACKEND picks RQ, Celery, Dramatiq or inline
  retries       retry policies, permanent failures, the retries-exhausted hook
  workers       StoreWorker (fast recovery) and WeightedWorker (Sidekiq-style weights)
  cron, cron_config   periodic jobs with RQ's cron
  web           the Flask app and its JSON API
  dashboard     the RQ dashboard at /jobs: login, JSON only (never pickle), same-origin POST for changes
The runtime (runtime/): starting, finding and stopping processes
  processes     finding, listing and stopping processes (psutil): ps / pgrep / lsof / kill
  stack         starting and stopping the course's processes, each with a run tag
  supervisord   `ebookstore up` and `ebookstore workers` under supervisord: every process restarted when it dies
  redis_server  which redis-server to run, and how
  procfile      the Procfile and the README's table of processes
  systemd/      an example unit file for the workers
The course (course/): what only the notebooks and exercises need
  notebook      the notebooks' environment cell and shared helpers
  grading, checks/   check("exNN") / `ebookstore check`
  specimens     throwaway processes to practise on (S, R, T, Z, a listener and its client)
  demo_jobs, signal_demo   small jobs and a signal-handling program for the demos
  measure       latency and round-trip measurement (notebook 01, make bench)

cli, the `ebookstore` command, sits on top of all three (`ebookstore check` runs the course's grader).
"""
