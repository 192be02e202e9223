"""OpenAI-compatible routes on a tiny causal-LM run, called by the official openai client."""

from __future__ import annotations

import time

import httpx
import pytest

from tailorkit import api
from tailorkit.generate import generate
from tailorkit.serve.app import create_app
from tailorkit.serve.models import load_served
from tailorkit.serve.server import BackgroundServer
from tailorkit.serve.settings import ServeSettings
from test_causal_lm import _recipe, qa_csv  # noqa: F401  (module fixtures)

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def lm_server(tiny_llama, qa_csv, tmp_path_factory):  # noqa: F811
    from tailorkit.recipe import recipe_from_dict

    run = api.train(recipe_from_dict(_recipe(tiny_llama, qa_csv, tmp_path_factory.mktemp("lm") / "chatty",
                                             ["full"], epochs=6)))
    app = create_app(load_served([run]), ServeSettings(max_new_tokens=16, max_prompt_tokens=40))
    with BackgroundServer(app) as url:
        yield run, openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_chat_matches_tailor_generate_and_streams_the_same_text(lm_server):
    run, client = lm_server
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    _, handle = api.load_generator(run)
    want = generate(handle, messages, max_new_tokens=12, greedy=True)
    got = client.chat.completions.create(model="chatty", messages=messages, max_tokens=12, temperature=0)
    assert got.choices[0].message.content == want and got.usage.completion_tokens <= 12
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="chatty", messages=messages, max_tokens=12, temperature=0, stream=True)]
    assert len(pieces) > 1 and "".join(pieces).strip() == want


def test_completions_and_limits(lm_server):
    _, client = lm_server
    out = client.completions.create(model="chatty", prompt="The capital of France", max_tokens=5,
                                    temperature=0)
    assert out.choices[0].finish_reason in ("stop", "length") and out.usage.completion_tokens <= 5
    chunks = list(client.completions.create(model="chatty", prompt="The capital of France", max_tokens=5,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == out.choices[0].text
    assert chunks[-1].choices[0].finish_reason == out.choices[0].finish_reason
    cut = list(client.completions.create(model="chatty", prompt="The capital of France", max_tokens=1,
                                         temperature=0, stream=True))
    assert cut[-1].choices[0].finish_reason == "length"  # was always "stop"
    for unsupported, why in (({"n": 2}, "n other than 1"), ({"stop": ["2"]}, "stop sequences")):
        with pytest.raises(openai.BadRequestError, match=why):  # were silently ignored
            client.chat.completions.create(model="chatty", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=4, **unsupported)
    with pytest.raises(openai.BadRequestError, match="limit is 16"):
        client.chat.completions.create(model="chatty", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=17)
    with pytest.raises(openai.BadRequestError, match="tokens; the limit is 40"):
        client.completions.create(model="chatty", prompt="Hello! " * 40, max_tokens=4)
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])


def test_two_lm_adapters_on_one_base_answer_as_each_run_alone(tiny_llama, qa_csv, tmp_path):  # noqa: F811
    import concurrent.futures

    from tailorkit.recipe import recipe_from_dict

    runs = {}
    for name, lr in (("calm", 3e-2), ("bold", 1e-1)):
        recipe = _recipe(tiny_llama, qa_csv, tmp_path / name, [{"lora": {"r": 8, "dropout": 0.0}}], epochs=3)
        recipe["train"]["lr"] = lr
        runs[name] = api.train(recipe_from_dict(recipe))
    models = load_served(list(runs.values()))
    assert models["calm"].handle is models["bold"].handle  # one base in memory
    prompts = ["What is the capital of France?", "Hello!", "Translate good morning into German."]
    want = {}
    for name, run in runs.items():
        _, handle = api.load_generator(run)
        want[name] = {p: generate(handle, [{"role": "user", "content": p}], max_new_tokens=8, greedy=True)
                      for p in prompts}
    assert want["calm"] != want["bold"]  # the adapters really differ, so a mix-up would show
    with BackgroundServer(create_app(models, ServeSettings(max_wait_ms=50))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

        def ask(job):
            name, prompt = job
            out = client.chat.completions.create(model=name, messages=[{"role": "user", "content": prompt}],
                                                 max_tokens=8, temperature=0)
            return name, prompt, out.choices[0].message.content

        jobs = [(n, p) for _ in range(3) for p in prompts for n in runs]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for name, prompt, got in pool.map(ask, jobs):
                assert got == want[name][prompt], (name, prompt)
        sizes = httpx.get(f"{url}/metrics.json").json()["generation_batches"]["sizes"]
        assert max(map(int, sizes)) > 1  # batched, and a batch only ever holds one adapter's requests


def test_concurrent_requests_are_batched_and_answer_as_each_alone(lm_server):
    """Greedy chat and completion requests of different prompt lengths and max_tokens, sent
    together, share generate calls (left padding) and give exactly the text, token count and
    finish reason that each gets alone."""
    import concurrent.futures

    from prometheus_client.parser import text_string_to_metric_families

    run, _ = lm_server
    chats = ["What is the capital of France?", "Hello!", "Translate good morning into German.",
             "Write a haiku about the sea"]
    jobs = [("chat", p, n) for p, n in zip(chats, (12, 3, 8, 16), strict=True)]
    jobs += [("text", p, n) for p, n in (("The capital of France", 6), ("Hello", 12), ("Guten", 2))]
    settings = ServeSettings(max_new_tokens=16, max_batch_size=8, max_wait_ms=300)
    with BackgroundServer(create_app(load_served([run]), settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

        def ask(job):
            kind, prompt, n = job
            if kind == "chat":
                out = client.chat.completions.create(model="chatty", max_tokens=n, temperature=0,
                                                     messages=[{"role": "user", "content": prompt}])
                text = out.choices[0].message.content
            else:
                out = client.completions.create(model="chatty", prompt=prompt, max_tokens=n, temperature=0)
                text = out.choices[0].text
            return text, out.choices[0].finish_reason, out.usage.completion_tokens

        alone = [ask(job) for job in jobs]  # one after the other: batches of one
        assert httpx.get(f"{url}/metrics.json").json()["generation_batches"]["sizes"] == {"1": len(jobs)}
        _, handle = api.load_generator(run)
        for (kind, prompt, n), (text, _, _) in zip(jobs, alone, strict=True):
            if kind == "chat":
                assert text == generate(handle, [{"role": "user", "content": prompt}], max_new_tokens=n,
                                        greedy=True)
        assert {finish for _, finish, _ in alone} == {"stop", "length"}  # both endings are exercised
        for _ in range(2):
            with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
                assert list(pool.map(ask, jobs)) == alone
        def sampled(_):
            return client.completions.create(model="chatty", prompt="Hello", max_tokens=10, temperature=1.0,
                                             seed=7).choices[0].text

        with concurrent.futures.ThreadPoolExecutor(3) as pool:  # seeded: each alone, so each the same
            assert len(set(pool.map(sampled, range(3)))) == 1
        families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        buckets = {s.labels["le"]: s.value for f in families for s in f.samples
                   if s.name == "tailor_batch_size_bucket" and s.labels["kind"] == "generate"}
    assert buckets["+Inf"] - buckets["1.0"] >= 1  # at least one generate call held several requests


def test_a_request_past_the_timeout_gets_504_and_the_server_goes_on(lm_server):
    run_dir = lm_server[0]
    # every request waits max_wait_ms for company, so 1 ms cannot be met
    settings = ServeSettings(max_new_tokens=16, request_timeout=0.001, max_wait_ms=50)
    served = load_served([run_dir])
    # the tiny model can make two tokens within 1 ms; with 5 ms a step, only the first one
    embeddings = served["chatty"].handle.model.get_input_embeddings()
    embeddings.register_forward_pre_hook(lambda *_: time.sleep(0.005))
    with BackgroundServer(create_app(served, settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError, match="--request-timeout") as err:
            client.chat.completions.create(model="chatty", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=8, temperature=0)
        assert err.value.status_code == 504
        # a stream is cut at the same time by generate's own max_time: after the first token
        pieces = [c.choices[0].text for c in client.completions.create(
            model="chatty", prompt="The capital of France", max_tokens=16, temperature=0, stream=True)]
        assert len([p for p in pieces if p]) <= 2
        assert httpx.get(f"{url}/health").status_code == 200
