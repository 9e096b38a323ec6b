"""Dates in the scheme (cut-over days, permit validity) are China's calendar days, not UTC's."""

import datetime as dt
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")


def china_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(CHINA).date()
