-- score_bands: how many leads sit in each score band, per scoring model.
--
-- Run as is:  clickhouse-client --multiquery < analytics/sql/score_bands.sql
--
-- ClickHouse holds a lead's score only where it crossed the threshold (table
-- mql); the live, decaying score is in Redis (GET /v1/leads/{lead_id}). So a
-- lead's band is that of its latest crossing up to the period's end, in
-- 25-point bands ('[125, 150)' = at least 125, below 150); leads without a
-- crossing are counted in the band below the model's threshold ('<100').
-- Leads = known leads (lead id, or an anonymous id linked to one) with a
-- non-bot event dated in the period below; models = those with at least one
-- crossing. FINAL folds replayed rows.
SELECT
    model,
    if(has_mql, concat('[', toString(band_min), ', ', toString(band_min + 25), ')'),
       concat('<', toString(threshold))) AS band,
    band_min,
    count() AS leads
FROM
(
    SELECT
        model,
        threshold,
        has_mql,
        if(has_mql, toInt64(floor(score / 25) * 25), toInt64(-1)) AS band_min
    FROM
    (
        SELECT model, threshold, person
        FROM
        (
            SELECT model, any(threshold) AS threshold
            FROM leadstream.mql FINAL
            WHERE toDate(crossed_at) <= toDate('2100-12-31') /*to*/
            GROUP BY model
        )
        CROSS JOIN
        (
            SELECT DISTINCT if(lead_id != '', lead_id, linked_lead) AS person
            FROM leadstream.events FINAL
            ANY LEFT JOIN
            (
                SELECT anonymous_id, argMin(lead_id, (linked_at, lead_id)) AS linked_lead
                FROM leadstream.identity_links FINAL
                GROUP BY anonymous_id
            ) USING (anonymous_id)
            WHERE bot = 0
              AND (lead_id != '' OR linked_lead != '')
              AND toDate(event_time) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
        )
    )
    ANY LEFT JOIN
    (
        SELECT model, lead_id AS person, argMax(score, (crossed_at_ms, mql_id)) AS score, toUInt8(1) AS has_mql
        FROM leadstream.mql FINAL
        WHERE toDate(crossed_at) <= toDate('2100-12-31') /*to*/
        GROUP BY model, lead_id
    ) USING (model, person)
)
GROUP BY model, threshold, has_mql, band_min
ORDER BY model, band_min;
