"""The site's pages link where a reader expects (ebookstore/course/website.py): no browser, no build needed."""
from ebookstore.course import website

NB = "notebooks/04_async_purchase_notifications.ipynb"


def rewrite(text, source=NB, final_urls=True):
    extra = set()
    return website.rewrite_links(text, source, final_urls, extra), extra


def test_a_notebooks_link_to_an_exercise_file_goes_to_the_exercises_page():
    text, _ = rewrite("[the stub](../exercises/ex04_async_purchase_notifications.py)")
    assert text == "[the stub](../exercises/ex04_async_purchase_notifications.html)"


def test_a_notebooks_links_to_notebooks_and_documents_go_to_their_html_pages():
    text, _ = rewrite("[07](07_signals_and_killing.ipynb#each-signal) [home](../README.md) "
                      "[list](../checklist.md) [guide](../solutions/README.md)")
    assert text == ("[07](07_signals_and_killing.html#each-signal) [home](../index.html) "
                    "[list](../checklist.html) [guide](../solutions/index.html)")


def test_a_markdown_page_keeps_source_names_for_mkdocs_to_resolve():
    text, _ = rewrite("[07](notebooks/07_signals_and_killing.ipynb) [ex](exercises/ex07_signals_and_killing.py)",
                      source="README.md", final_urls=False)
    assert text == "[07](notebooks/07_signals_and_killing.ipynb) [ex](exercises/ex07_signals_and_killing.md)"


def test_solution_code_is_never_linked_nor_copied(capsys):
    text, extra = rewrite("see [the solution](../solutions/ex04_async_purchase_notifications.py) here")
    assert text == "see the solution here" and extra == set()
    assert "does not publish" in capsys.readouterr().out


def test_a_linked_repository_file_is_copied_into_the_site():
    text, extra = rewrite("[Procfile](../Procfile) and [uv](https://docs.astral.sh/uv/) and [up](#clean-up)")
    assert text == "[Procfile](../Procfile) and [uv](https://docs.astral.sh/uv/) and [up](#clean-up)"
    assert extra == {"Procfile"}


def test_a_mention_of_an_exercise_file_becomes_a_link_to_its_page():
    text = website.link_exercise_mentions("In `exercises/ex04_async_purchase_notifications.py` write", NB)
    assert text == ("In [`exercises/ex04_async_purchase_notifications.py`]"
                    "(../exercises/ex04_async_purchase_notifications.html) write")
    assert website.link_exercise_mentions("`exercises/ex99_nothing.py`", NB) == "`exercises/ex99_nothing.py`"
