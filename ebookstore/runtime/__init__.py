"""The runtime: starting, finding and stopping the course's processes.

  processes     finding, listing and stopping processes (psutil): ps / pgrep / lsof / kill
  stack         starting and stopping a run's processes (Redis, workers, cron, relay, web, mail), each with a run tag
  supervisord   `ebookstore up` and `ebookstore workers` under supervisord: every process restarted when it dies
  redis_server  which redis-server to run, and how
  procfile      the Procfile and the README's table of processes
  systemd/      an example unit file for workers in production

It uses the store (its settings, its worker command) and never the course.
"""
