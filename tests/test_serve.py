"""The HTTP service (pipeline/serving/http_api.py) as a client sees it: the real `python -m pipeline serve` in a
subprocess on a free loopback port, over the small generated run, called with httpx. Every answer is checked against
the Recommender in-process on the same artifacts; bad input must give 404/405/413/422 with a JSON body,
never a 500; a concurrent burst must answer each request for its own user. The service runs 2 worker processes
with 2 recommender threads each, so that requests share a Recommender across threads as well as processes."""

import hashlib
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import config, config_serving
from pipeline.bench.serve_bench import start_service
from pipeline.processes import free_port, stop_process
from pipeline.serving.errors import model_name
from pipeline.serving.recommender import Recommender

RECOMMENDATIONS = "/v1/users/{user_id}/recommendations"


@pytest.fixture(scope="module")
def rec(small_run):
    return Recommender.load(small_run / "data" / "processed", small_run / "artifacts" / "models")


@pytest.fixture(scope="module")
def service(small_run, tmp_path_factory):
    """The service's base URL and the file its log goes to; stopped after the module."""
    port, log_path = free_port(), tmp_path_factory.mktemp("serve") / "serve.log"
    processed, models = small_run / "data" / "processed", small_run / "artifacts" / "models"
    process = start_service(processed, models, port, log_path, workers=2, threads=2)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"the service exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the service never got ready: {log_path.read_text()[-3000:]}"
            try:
                if httpx.get(f"{base}/v1/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base, log_path
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service[0], timeout=120) as http:
        yield http


def expected_items(top) -> list[dict]:
    return top[["rank", "movie_id", "title", "genres", "score"]].to_dict("records")


def assert_same_items(got: list[dict], want: list[dict]) -> None:
    assert [item["movie_id"] for item in got] == [item["movie_id"] for item in want]
    assert [item["rank"] for item in got] == list(range(1, len(want) + 1))
    assert [(item["title"], item["genres"]) for item in got] == [(item["title"], item["genres"]) for item in want]
    assert [item["score"] for item in got] == pytest.approx([item["score"] for item in want], rel=1e-5, abs=1e-6)


def test_health_says_which_models_are_loaded_when_trained_and_the_data_checksum(client, rec, small_run):
    # Ready first (default requests from the precomputed tables), warm once the default models are loaded.
    deadline = time.monotonic() + 120
    while not (health := client.get("/v1/health").json())["warm"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.2)
    assert health["status"] == "ready"
    assert health["default_model"] == config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)
    assert set(health["models"]) == set(config.models_of(*config.SERVED_MODES))
    for name, status in health["models"].items():
        assert status["trained_at"] == rec.trained_at(name) and status["trained_at"] is not None
    for name in config.models_of(*config_serving.SERVE["preload_modes"]):
        assert health["models"][name]["loaded"]
    encoders = small_run / "data" / "processed" / "encoders.json"
    assert health["data"]["encoders_sha256"] == hashlib.sha256(encoders.read_bytes()).hexdigest()
    assert health["data"]["users"] == len(rec.users) and health["data"]["movies"] == len(rec.movies)
    assert (health["workers"], health["threads"]) == (2, 2)


def test_profile_and_liked_history_are_the_cores(client, rec):
    assert client.get("/v1/users/5").json() == rec.profile(5)
    liked = client.get("/v1/users/5/liked").json()
    want = rec.liked_history(5).to_dict("records")
    assert liked == {"user_id": 5, "count": len(want), "items": want}
    assert liked["count"] > 0


@pytest.mark.parametrize("architecture", config.ARCHITECTURES)
@pytest.mark.parametrize("mode", config.SERVED_MODES)
def test_top_n_is_the_cores_for_every_model_and_mode(client, rec, architecture, mode):
    year, month = rec.valid_years()[0], int(rec.encoders.classes["rating_month"][0])
    answer = client.get(
        RECOMMENDATIONS.format(user_id=7),
        # `architecture` is the parameter's name; `model`, its old one, still works.
        params={"n": 7, ("architecture" if mode == "two_stage" else "model"): architecture, "mode": mode}
        | {"year": year, "month": month},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["user_id"], body["model"], body["architecture"], body["mode"]) == (
        7,
        model_name(architecture, mode),
        architecture,
        mode,
    )
    assert body["context"] == {"year": year, "month": month, "source": "given"}
    assert len(body["items"]) == 7
    assert_same_items(body["items"], expected_items(rec.recommend(7, architecture, year, month, 7, mode)))


def test_top_n_defaults_are_the_default_model_n_and_the_users_latest_month(client, rec):
    body = client.get(RECOMMENDATIONS.format(user_id=12)).json()
    assert body["model"] == config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)
    year, month = rec.context(12)
    assert body["context"] == {"year": year, "month": month, "source": "the month of the user's latest rating"}
    assert_same_items(body["items"], expected_items(rec.recommend(12)))
    assert len(body["items"]) == config.TOP_N


def test_new_person_top_n_is_recommend_for_liked(client, rec):
    movies = rec.movies_by_likes()["movie_id"].tolist()
    liked = [movies[3], movies[10], movies[3], movies[25]]
    person = {"liked": liked, "gender": "F", "age": 25, "occupation": 4, "n": 6, "architecture": "autoint"}
    answer = client.post("/v1/recommendations", json=person)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user_id"] is None and body["model"] == "autoint_two_stage" and body["mode"] == "two_stage"
    assert [movie["movie_id"] for movie in body["liked"]] == [movies[3], movies[10], movies[25]]
    want = rec.recommend_for_liked(liked, "autoint", "F", 25, 4, None, None, 6)
    assert_same_items(body["items"], expected_items(want))
    assert not {item["movie_id"] for item in body["items"]} & set(liked)
    year, month = rec.context(None)
    assert body["context"] == {"year": year, "month": month, "source": "the latest month in the ratings"}


def test_movie_search_finds_ids_by_title(client, rec):
    title = rec.movies_by_likes()["title"].iloc[0]
    fragment = title.split(" (")[0][2:].upper()
    body = client.get("/v1/movies", params={"q": fragment, "limit": 3}).json()
    assert body["items"] == rec.search_movies(fragment, 3).to_dict("records")
    assert 1 <= len(body["items"]) <= 3 and title in [item["title"] for item in body["items"]]
    accented = client.get("/v1/movies", params={"q": "é"}).json()["items"]
    assert accented and all("é" in item["title"] for item in accented)


TOO_MANY = list(range(1, config.MAX_LIKED + 2))
BAD_REQUESTS = [
    # (method, path, query or body, status, words the message must contain)
    ("GET", RECOMMENDATIONS.format(user_id="abc"), {}, 422, ["user_id", "abc"]),
    ("GET", RECOMMENDATIONS.format(user_id=0), {}, 404, ["unknown user 0"]),
    ("GET", RECOMMENDATIONS.format(user_id=6041), {}, 404, ["unknown user 6041"]),
    ("GET", RECOMMENDATIONS.format(user_id=10**30), {}, 404, ["unknown user"]),
    ("GET", "/v1/users/6041", {}, 404, ["unknown user 6041"]),
    ("GET", "/v1/users/0/liked", {}, 404, ["unknown user 0"]),
    ("GET", "/v1/users/-3/liked", {}, 404, ["unknown user -3"]),
    ("GET", RECOMMENDATIONS.format(user_id=3), {"n": 0}, 422, ["n", "greater than or equal to 1"]),
    (
        "GET",
        RECOMMENDATIONS.format(user_id=3),
        {"n": 10**6},
        422,
        ["n", f"or equal to {config_serving.SERVE['max_n']}"],
    ),
    ("GET", RECOMMENDATIONS.format(user_id=3), {"n": "ten"}, 422, ["n", "integer"]),
    ("GET", RECOMMENDATIONS.format(user_id=3), {"month": 13}, 422, ["month", "less than or equal to 12"]),
    ("GET", RECOMMENDATIONS.format(user_id=3), {"month": 0}, 422, ["month"]),
    ("GET", RECOMMENDATIONS.format(user_id=3), {"year": 1850}, 422, ["year 1850", "valid years"]),
    ("GET", RECOMMENDATIONS.format(user_id=3), {"model": "deepfm"}, 422, ["model", "'autoint'", "'autoint_mlp'"]),
    ("GET", RECOMMENDATIONS.format(user_id=3), {"architecture": "dcn"}, 422, ["architecture", "'autoint'"]),
    ("POST", "/v1/recommendations", {"liked": [1], "architecture": "dcn"}, 422, ["architecture", "'autoint'"]),
    ("GET", RECOMMENDATIONS.format(user_id=3), {"mode": "tuned"}, 422, ["mode", "'two_stage'", "'reference'"]),
    ("POST", "/v1/recommendations", {"liked": []}, 422, ["liked", "at least 1"]),
    ("POST", "/v1/recommendations", {"liked": TOO_MANY}, 422, ["liked", f"at most {config.MAX_LIKED}"]),
    ("POST", "/v1/recommendations", {"liked": [999_999]}, 404, ["999999", "not in the catalogue"]),
    ("POST", "/v1/recommendations", {"liked": ["two"]}, 422, ["liked", "integer"]),
    ("POST", "/v1/recommendations", {}, 422, ["liked", "required"]),
    ("POST", "/v1/recommendations", {"liked": [1], "gender": "X"}, 422, ["gender", "'M'", "'F'"]),
    ("POST", "/v1/recommendations", {"liked": [1], "age": 30}, 422, ["age", "25"]),
    ("POST", "/v1/recommendations", {"liked": [1], "occupation": 21}, 422, ["occupation", "20"]),
    ("POST", "/v1/recommendations", {"liked": [1], "month": 13}, 422, ["month"]),
    ("POST", "/v1/recommendations", {"liked": [1], "n": 10**6}, 422, ["n"]),
    ("POST", "/v1/recommendations", {"liked": [1], "mode": "reference"}, 422, ["mode", "not permitted"]),
    ("GET", "/v1/movies", {"q": "  "}, 422, ["search text is empty"]),
    ("GET", "/v1/movies", {}, 422, ["q", "required"]),
    ("GET", "/v1/movies", {"q": "a", "limit": 0}, 422, ["limit"]),
    ("GET", "/v1/no/such/thing", {}, 404, ["no such endpoint"]),
    ("DELETE", "/v1/health", {}, 405, ["DELETE is not allowed"]),
]


@pytest.mark.parametrize(
    "method, path, given, status, words",
    BAD_REQUESTS,
    ids=[f"{method} {path} {given}"[:70] for method, path, given, *_ in BAD_REQUESTS],
)
def test_bad_input_is_a_json_4xx_that_says_what_is_wrong(client, rec, method, path, given, status, words):
    if "liked" in given and given["liked"] == [1]:
        given = {**given, "liked": [int(rec.movies_by_likes()["movie_id"].iloc[0])]}
    answer = client.request(method, path, **({"json": given} if method == "POST" else {"params": given}))
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] and body["message"]
    for word in words:
        assert word in body["message"], body["message"]


def test_a_body_that_is_not_json_is_a_422(client):
    answer = client.post("/v1/recommendations", content=b"{liked: 1", headers={"content-type": "application/json"})
    assert answer.status_code == 422 and answer.json()["error"] == "invalid_request"


def test_an_oversized_body_is_refused_with_413_whether_its_length_is_declared_or_chunked(client, rec):
    size = config_serving.SERVE["max_body_bytes"] + 1
    declared = client.post("/v1/recommendations", content=b" " * size, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"] == "payload_too_large"
    chunked = client.post(
        "/v1/recommendations",
        content=iter([b" " * 4096] * (size // 4096 + 1)),
        headers={"content-type": "application/json"},
    )
    assert chunked.status_code == 413
    # A full liked list is well under the limit.
    known = int(rec.movies_by_likes()["movie_id"].iloc[0])
    assert client.post("/v1/recommendations", json={"liked": [known] * config.MAX_LIKED}).status_code == 200


def test_openapi_describes_every_parameter_and_body_field(client):
    spec = client.get("/openapi.json").json()
    operations = [operation for item in spec["paths"].values() for operation in item.values()]
    assert {
        "/v1/health",
        "/v1/users/{user_id}",
        "/v1/users/{user_id}/liked",
        RECOMMENDATIONS,
        "/v1/recommendations",
        "/v1/movies",
        "/metrics",
    } <= set(spec["paths"])
    parameters = [parameter for operation in operations for parameter in operation.get("parameters", [])]
    assert parameters and all(parameter.get("description") for parameter in parameters), parameters
    body = spec["components"]["schemas"]["LikedRequest"]["properties"]
    assert all(field.get("description") for field in body.values()), body
    assert client.get("/docs").status_code == 200


def eventually(read, ready, timeout: float = 30):
    """read() until ready(value) or `timeout` seconds; a worker logs and counts a request just after it has
    answered it, so the figures may come a moment after the answer."""
    deadline = time.monotonic() + timeout
    value = read()
    while not ready(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def metric_samples(client, family: str, sample: str) -> list:
    families = text_string_to_metric_families(client.get("/metrics").text)
    return [item for found in families if found.name == family for item in found.samples if item.name == sample]


def test_every_request_is_one_json_log_line_and_counted_in_the_metrics(client, service):
    client.get(RECOMMENDATIONS.format(user_id=4), params={"n": 3})
    client.get(RECOMMENDATIONS.format(user_id=6041))
    default = config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)

    def counts():
        return {
            (item.labels["route"], item.labels["status"]): item.value
            for item in metric_samples(client, "http_requests", "http_requests_total")
        }

    counted = eventually(counts, lambda found: {(RECOMMENDATIONS, "200"), (RECOMMENDATIONS, "404")} <= set(found))
    assert counted[(RECOMMENDATIONS, "200")] >= 1 and counted[(RECOMMENDATIONS, "404")] >= 1

    def timed_and_counted():
        timed = sum(
            item.value
            for item in metric_samples(client, "http_request_duration_seconds", "http_request_duration_seconds_bucket")
            if item.labels["route"] == RECOMMENDATIONS and item.labels["le"] == "+Inf"
        )
        return timed, sum(value for (route, _), value in counts().items() if route == RECOMMENDATIONS)

    timed, total = eventually(timed_and_counted, lambda pair: pair[0] == pair[1])
    assert timed == total >= 2
    served = {
        item.labels["model"]: item.value for item in metric_samples(client, "recommendations", "recommendations_total")
    }
    assert served[default] >= 1

    def requests():
        lines = [json.loads(line) for line in service[1].read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if "status" in line]

    logged = eventually(
        requests,
        lambda lines: (
            {"/v1/users/4/recommendations", "/v1/users/6041/recommendations"} <= {line["path"] for line in lines}
        ),
    )
    mine = [line for line in logged if line["path"] == "/v1/users/4/recommendations" and line["query"] == "n=3"]
    assert mine and mine[-1]["status"] == 200 and mine[-1]["route"] == RECOMMENDATIONS
    assert mine[-1]["model"] == default and mine[-1]["method"] == "GET"
    assert isinstance(mine[-1]["latency_ms"], float) and mine[-1]["latency_ms"] >= 0
    assert any(line["path"] == "/v1/users/6041/recommendations" and line["status"] == 404 for line in logged)
    assert not any(line["status"] >= 500 for line in logged)


def test_a_concurrent_burst_answers_every_request_for_its_own_user(client, rec):
    """8 clients × 50 requests for random users, models, N and months at once: each answer must be the one
    recommend() gives for that request alone."""
    rng = random.Random(14)
    users = rng.sample([int(user) for user in rec.encoders.classes["user_id"]], 40)
    months = [None, *map(int, rec.encoders.classes["rating_month"][:2])]
    asks = [
        (rng.choice(users), rng.choice(config.ARCHITECTURES), rng.choice([3, 10]), rng.choice(months))
        for _ in range(8 * 50)
    ]
    want = {ask: expected_items(rec.recommend(ask[0], ask[1], None, ask[3], ask[2])) for ask in set(asks)}

    def ask_all(mine):
        with httpx.Client(base_url=client.base_url, timeout=120) as http:
            return [
                (
                    ask,
                    http.get(
                        RECOMMENDATIONS.format(user_id=ask[0]),
                        params={"model": ask[1], "n": ask[2], **({"month": ask[3]} if ask[3] else {})},
                    ),
                )
                for ask in mine
            ]

    with ThreadPoolExecutor(8) as pool:
        answers = [answer for part in pool.map(ask_all, [asks[i::8] for i in range(8)]) for answer in part]
    assert len(answers) == len(asks)
    for ask, answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["user_id"] == ask[0] and body["architecture"] == ask[1]
        assert_same_items(body["items"], want[ask])


def test_every_item_says_because_you_liked(client, rec):
    body = client.get(RECOMMENDATIONS.format(user_id=7)).json()
    want = list(rec.recommend(7)["because"])
    assert [item["because"] for item in body["items"]] == want and any(want)
    body = client.get(RECOMMENDATIONS.format(user_id=7), params={"month": 1, "n": 5}).json()
    assert [item["because"] for item in body["items"]] == list(rec.recommend(7, month=1, n=5)["because"])
    body = client.get(RECOMMENDATIONS.format(user_id=7), params={"mode": "reference", "n": 3}).json()
    assert [item["because"] for item in body["items"]] == [[], [], []]
    liked = [int(movie) for movie in rec.movies_by_likes()["movie_id"].iloc[[2, 8, 20]]]
    body = client.post("/v1/recommendations", json={"liked": liked, "n": 5}).json()
    want = list(rec.recommend_for_liked(liked, n=5)["because"])
    assert [item["because"] for item in body["items"]] == want and any(want)
    assert {movie["movie_id"] for item in body["items"] for movie in item["because"]} <= set(liked)
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["RankedMovie"]["properties"]["because"]["description"]
    assert set(schema["BecauseMovie"]["properties"]) == {"movie_id", "title"}


def test_connections_opened_together_are_spread_over_both_workers(service):
    """Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads new connections over them; with
    one shared socket, 16 keep-alive connections opened at once often all landed on one worker."""
    base = service[0]

    def pids_of_fresh_connections(count: int) -> list[int]:
        clients = [httpx.Client(base_url=base, timeout=60) for _ in range(count)]
        try:
            with ThreadPoolExecutor(count) as pool:
                return list(pool.map(lambda http: http.get("/v1/health").json()["pid"], clients))
        finally:
            for http in clients:
                http.close()

    deadline = time.monotonic() + 120  # the second worker may still be starting: it listens once it is ready
    while len(set(pids_of_fresh_connections(8))) < 2:
        assert time.monotonic() < deadline, "only one worker ever answered"
        time.sleep(0.5)
    # Both listen now: 16 connections opened together all on one worker would happen with odds 2 in 65,536.
    pids = pids_of_fresh_connections(16)
    assert len(set(pids)) == 2, pids
