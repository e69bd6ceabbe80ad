-- Each named segment's size per evaluated day (the last evaluation of the day wins), for the
-- segments page's trend.
CREATE TABLE segment_history (
    segment TEXT NOT NULL,
    as_of TEXT NOT NULL,
    members BIGINT NOT NULL,
    evaluated_at BIGINT NOT NULL,
    PRIMARY KEY (segment, as_of)
);
