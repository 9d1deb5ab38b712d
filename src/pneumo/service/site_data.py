"""The history as the site's figures read it: each analysis with the label of its latest review
(:class:`pneumo.site.report.SiteRow`) and the report built from them, for the page and ``pneumo site report``;
and the reviewed images as local labels for ``pneumo adapt --from-history``."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from pneumo.service.clock import utc_now
from pneumo.service.history_schema import analyses, reviews
from pneumo.site.report import ReportRules, SiteRow, build_report
from pneumo.site.reviewed import ReviewedImage, reviewed_image


def site_rows(engine: sa.Engine) -> list[SiteRow]:
    """Every analysis, oldest first, with its latest review's label (None when nobody reviewed it)."""
    newest = (sa.select(reviews.c.analysis_id, sa.func.max(reviews.c.id).label("review_id"))
              .group_by(reviews.c.analysis_id).subquery())
    latest = sa.select(reviews.c.id, reviews.c.label).subquery()
    query = (sa.select(analyses.c.created, analyses.c.model_id, analyses.c.model_version, analyses.c.model_parent,
                       analyses.c.result, latest.c.label.label("review"))
             .select_from(analyses.outerjoin(newest, newest.c.analysis_id == analyses.c.id)
                          .outerjoin(latest, latest.c.id == newest.c.review_id))
             .order_by(analyses.c.id))
    with engine.connect() as connection:
        return [_row(row) for row in connection.execute(query)]


def _row(row: sa.Row) -> SiteRow:
    result = json.loads(row.result)
    probability = result.get("probability")
    return SiteRow(created=str(row.created), model=row.model_id or row.model_version, label=str(result.get("label")),
                   probability=None if probability is None else float(probability),
                   warned=bool(result.get("out_of_distribution")), review=row.review,
                   model_version=row.model_version, model_parent=row.model_parent)


def site_report(engine: sa.Engine, rules: ReportRules = ReportRules()) -> dict[str, Any]:
    return build_report(site_rows(engine), rules, generated=utc_now())


def reviewed_images(engine: sa.Engine) -> list[ReviewedImage]:
    """Each reviewed analysis's image with the label of its latest review (NOT_ASSESSABLE left out), one per
    image (the newest analysis of it wins)."""
    newest = (sa.select(reviews.c.analysis_id, sa.func.max(reviews.c.id).label("review_id"))
              .group_by(reviews.c.analysis_id).subquery())
    query = (sa.select(analyses.c.image_sha256, analyses.c.study_instance_uid, reviews.c.label)
             .select_from(newest.join(reviews, reviews.c.id == newest.c.review_id)
                          .join(analyses, analyses.c.id == newest.c.analysis_id))
             .order_by(analyses.c.id))
    with engine.connect() as connection:
        found = [reviewed_image(row.image_sha256, row.label, row.study_instance_uid)
                 for row in connection.execute(query)]
    return list({image.sha256: image for image in found if image is not None}.values())
