"""The ebook store of the course *Background Jobs and Process Management*.

Modules, each named after what it is:

The store
  config        settings from environment variables
  store         users, ebooks, purchases (SQLite); a purchase is one transaction
  reports       sales statistics
  mail          the store's emails, their (idempotent) delivery, the outbox of delivered mail
  queues        queue configuration (queues.toml), Redis connection, enqueueing (JSON)
  jobs          the background jobs workers run, and the purchase flow that enqueues them
  outbox        jobs recorded in the purchase's transaction, relayed to Redis
  retries       retry policies, permanent failures, the retries-exhausted hook
  workers       StoreWorker (fast recovery) and WeightedWorker (Sidekiq-style weights)
  cron, cron_config   periodic jobs with RQ's cron
  web           the Flask app, its JSON API and the RQ dashboard
The runtime
  redis_server  which redis-server to run, and how
  processes     finding, listing and stopping processes (psutil): ps / pgrep / lsof / kill
  stack         starting and stopping the course's processes, each with a run tag
  procfile      the Procfile and the README's table of processes
  cli           the `ebookstore` command
The course
  course        the notebooks' environment cell and shared helpers
  grading, graders   check("exNN") / `ebookstore check`
  specimens     throwaway processes to practise on (S, R, T, Z, a listener and its client)
  demo_jobs, signal_demo   small jobs and a signal-handling program for the demos
  measure       latency and round-trip measurement (notebook 01, make bench)
"""
