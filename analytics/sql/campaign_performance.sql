-- campaign_performance: per campaign, its touches, the people and leads it
-- reached, and the MQLs, won deals and revenue it influenced, next to its cost.
--
-- Run as is:  clickhouse-client --multiquery < analytics/sql/campaign_performance.sql
--
-- touch   = a non-bot page view, email open or click, form or custom event
--           with a campaign; a lead's touches include those of the anonymous
--           ids linked to it (identity_links).
-- touches = touches dated in the period; people = distinct people (leads and
--           never-linked anonymous visitors) among them; leads = known leads.
-- mqls    = leads whose earliest MQL crossing in the period (any model) came
--           after a touch of the campaign (at any time before it).
-- won, revenue = deal_won events dated in the period whose lead was touched by
--           the campaign before the deal. Influence, not attribution: a deal
--           touched by two campaigns counts in full for both (see romi.sql
--           for revenue split between campaigns).
-- cost    = campaign_costs of the days in the period.
-- Bot-flagged events are left out; FINAL folds replayed rows and re-imported
-- costs. Period: the two dates below (inclusive, server time zone).
SELECT
    campaign,
    sum(n_touches) AS touches,
    sum(n_people) AS people,
    sum(n_leads) AS leads,
    sum(n_mqls) AS mqls,
    sum(n_won) AS won,
    round(sum(rev), 2) AS revenue,
    round(sum(spend), 2) AS cost
FROM
(
    -- touches, people and leads in the period
    SELECT
        campaign,
        count() AS n_touches,
        uniqExact(person) AS n_people,
        uniqExactIf(person, known) AS n_leads,
        toUInt64(0) AS n_mqls,
        toUInt64(0) AS n_won,
        toFloat64(0) AS rev,
        toFloat64(0) AS spend
    FROM
    (
        SELECT
            campaign,
            if(lead_id != '', lead_id, if(linked_lead != '', linked_lead, concat('anon:', anonymous_id))) AS person,
            lead_id != '' OR linked_lead != '' AS known
        FROM leadstream.events FINAL
        ANY LEFT JOIN
        (
            SELECT anonymous_id, argMin(lead_id, (linked_at, lead_id)) AS linked_lead
            FROM leadstream.identity_links FINAL
            GROUP BY anonymous_id
        ) USING (anonymous_id)
        WHERE bot = 0 AND campaign != ''
          AND type IN ('page_view', 'email_open', 'email_click', 'form_submit', 'custom')
          AND toDate(event_time) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
    )
    GROUP BY campaign

    UNION ALL

    -- MQLs, won deals and revenue influenced: each lead's first touch per
    -- campaign against its MQL time and its deals
    SELECT
        campaign,
        toUInt64(0) AS n_touches,
        toUInt64(0) AS n_people,
        toUInt64(0) AS n_leads,
        toUInt64(countIf(mql_ms >= first_touch_ms)) AS n_mqls,
        toUInt64(sum(length(arrayFilter(d -> d.1 > first_touch_ms, deals)))) AS n_won,
        sum(arraySum(arrayMap(d -> d.2, arrayFilter(d -> d.1 > first_touch_ms, deals)))) AS rev,
        toFloat64(0) AS spend
    FROM
    (
        SELECT campaign, person, first_touch_ms, mql_ms, deals
        FROM
        (
            SELECT
                if(lead_id != '', lead_id, linked_lead) AS person,
                campaign,
                min(event_time_ms) AS first_touch_ms
            FROM leadstream.events FINAL
            ANY LEFT JOIN
            (
                SELECT anonymous_id, argMin(lead_id, (linked_at, lead_id)) AS linked_lead
                FROM leadstream.identity_links FINAL
                GROUP BY anonymous_id
            ) USING (anonymous_id)
            WHERE bot = 0 AND campaign != ''
              AND type IN ('page_view', 'email_open', 'email_click', 'form_submit', 'custom')
              AND (lead_id != '' OR linked_lead != '')
            GROUP BY person, campaign
        )
        ANY LEFT JOIN
        (
            SELECT person, max(mql_ms) AS mql_ms, groupArrayIf((deal_ms, deal_revenue), deal_ms > 0) AS deals
            FROM
            (
                SELECT lead_id AS person, min(crossed_at_ms) AS mql_ms, toUInt64(0) AS deal_ms, toFloat64(0) AS deal_revenue
                FROM leadstream.mql FINAL
                WHERE toDate(crossed_at) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
                GROUP BY lead_id
                UNION ALL
                SELECT
                    if(lead_id != '', lead_id, linked_lead) AS person,
                    toUInt64(0) AS mql_ms,
                    event_time_ms AS deal_ms,
                    toFloat64(revenue) AS deal_revenue
                FROM leadstream.events FINAL
                ANY LEFT JOIN
                (
                    SELECT anonymous_id, argMin(lead_id, (linked_at, lead_id)) AS linked_lead
                    FROM leadstream.identity_links FINAL
                    GROUP BY anonymous_id
                ) USING (anonymous_id)
                WHERE bot = 0 AND type = 'deal_won'
                  AND (lead_id != '' OR linked_lead != '')
                  AND toDate(event_time) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
            )
            GROUP BY person
        ) USING (person)
    )
    GROUP BY campaign

    UNION ALL

    -- cost
    SELECT
        campaign,
        toUInt64(0) AS n_touches,
        toUInt64(0) AS n_people,
        toUInt64(0) AS n_leads,
        toUInt64(0) AS n_mqls,
        toUInt64(0) AS n_won,
        toFloat64(0) AS rev,
        toFloat64(cost) AS spend
    FROM leadstream.campaign_costs FINAL
    WHERE day BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
)
WHERE '' /*campaign*/ = '' OR campaign = '' /*campaign*/
GROUP BY campaign
ORDER BY campaign;
