"""Mail delivery: into the Maildir, or by real SMTP to the aiosmtpd catcher process."""
import shutil
import time

from ebookstore import mail


def purchase():
    return {"id": 7, "title": "T", "price_cents": 1000, "commission_cents": 800, "ebook_id": 1,
            "buyer_name": "Ada", "buyer_email": "ada@example.test",
            "seller_name": "Cleo", "seller_email": "cleo@example.test"}


def test_maildir_delivery_and_outbox(settings):
    mail.deliver(mail.receipt_email(purchase()), settings)
    mail.deliver(mail.commission_email(purchase()), settings)
    box = mail.outbox(settings)
    assert [(m["to"], m["key"]) for m in box] == [("ada@example.test", "purchase-7-receipt"),
                                                  ("cleo@example.test", "purchase-7-commission")]
    assert "$8.00" in mail.commission_email(purchase()).get_content()


def test_the_outbox_reads_each_email_once_and_a_new_one_afresh(settings, monkeypatch):
    mail.deliver(mail.receipt_email(purchase()), settings)
    read = []
    monkeypatch.setattr(mail, "_read", lambda *args, real=mail._read: read.append(args) or real(*args))
    first = mail.outbox(settings)
    assert len(read) == 1
    time.sleep(mail.SETTLED)
    assert mail.outbox(settings) == first  # read again if it was under 0.1 s old at the first look (mail.SETTLED)
    reads = len(read)
    assert mail.outbox(settings) == first and len(read) == reads, "read again, although it had settled"
    first[0]["subject"] = "changed by the caller"
    assert [m["subject"] for m in mail.outbox(settings)] == ["Your receipt: T"]  # a copy each time
    # The Maildir made afresh, an email of the same key (so the same file name) but another subject:
    shutil.rmtree(settings.maildir)
    mail.deliver(mail.receipt_email({**purchase(), "title": "U"}), settings)
    assert [m["subject"] for m in mail.outbox(settings)] == ["Your receipt: U"]
    (settings.maildir / "new" / "purchase-7-receipt").unlink()
    assert mail.outbox(settings) == []


def test_delay_plays_a_slow_provider(settings):
    slow = settings.replace(mail_delay=0.2)
    started = time.perf_counter()
    mail.deliver(mail.receipt_email(purchase()), slow)
    assert time.perf_counter() - started >= 0.2  # the delay is played (an upper bound would time the machine)


def test_smtp_delivery_through_the_mail_catcher(settings, stack):
    stack.mail()
    via_smtp = settings.replace(smtp_url=f"smtp://127.0.0.1:{settings.smtp_port}")
    mail.deliver(mail.receipt_email(purchase()), via_smtp)
    box = mail.outbox(settings)
    assert [m["subject"] for m in box] == ["Your receipt: T"]
