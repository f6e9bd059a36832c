"""The ebook store of the course *Background Jobs and Process Management*.

Modules, each named after what it is:
config     settings from environment variables
store      users, ebooks, purchases (SQLite); a purchase is one transaction
reports    sales statistics
mail       the store's emails, their delivery and the outbox
queues     queue configuration (queues.toml), Redis connection, enqueueing
jobs       the background jobs workers run
workers    strict and weighted RQ workers
cron       periodic jobs for RQ's cron
web        the Flask app, its JSON API and the RQ dashboard
processes  finding and stopping processes (psutil), like ps / pgrep / kill
stack      starting and stopping the course's processes, each with a run tag
cli        the `ebookstore` command
"""
