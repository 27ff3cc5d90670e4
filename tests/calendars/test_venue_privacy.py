"""A venue's calendar token is a secret: staff see whether a feed exists, never its hash."""


async def test_venue_responses_say_a_feed_exists_without_exposing_its_hash(client, tenant):
    before = (await client.get(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers)).json()
    assert before["calendar_feed_enabled"] is False and "calendar_token_hash" not in before

    created = await client.post(f"/v1/venues/{tenant.venue_id}/calendar-token", headers=tenant.headers)
    assert created.status_code in (200, 201), created.text

    for response in (await client.get(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers),
                     await client.get("/v1/venues", headers=tenant.headers),
                     await client.patch(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers,
                                        json={"city": "Boston"})):
        assert response.status_code == 200
        assert "calendar_token_hash" not in response.text
        assert created.json()["token"] not in response.text
    assert (await client.get(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers)).json()["calendar_feed_enabled"]
