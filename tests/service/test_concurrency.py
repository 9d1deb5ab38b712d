"""Predictions run in the thread pool: slow analyses overlap and never block other requests."""

from __future__ import annotations

import asyncio
import time

import httpx

from pneumo.service import create_app


def test_slow_predictions_do_not_block_the_event_loop(make_settings, xray_jpeg):
    app = create_app(make_settings(workers=4))
    predictor = app.state.service.predictor
    real_explain = predictor.explain
    delay = 1.0  # long enough that the requests' own cost on a loaded 2-core machine stays small beside it

    def slow_explain(source, **options):
        time.sleep(delay)  # stands in for a big model: blocking, GIL released like torch does
        return real_explain(source, **options)

    predictor.explain = slow_explain

    async def scenario() -> tuple[float, list[float], float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            start = time.perf_counter()

            async def predict() -> float:
                response = await client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_jpeg, "image/jpeg")})
                assert response.status_code == 200, response.text
                return time.perf_counter() - start

            async def health() -> float:
                await asyncio.sleep(0.05)  # let the uploads reach the thread pool first
                assert (await client.get("/api/v1/health")).status_code == 200
                return time.perf_counter() - start

            results = await asyncio.gather(health(), *(predict() for _ in range(4)))
            return results[0], list(results[1:]), time.perf_counter() - start

    try:
        health_done, predict_done, total = asyncio.run(scenario())
    finally:
        app.state.service.history.close()
    assert health_done < delay, f"/health waited {health_done:.2f} s behind the predictions"
    assert total < 3 * delay, f"4 predictions took {total:.2f} s; they did not overlap"
    assert min(predict_done) >= delay
