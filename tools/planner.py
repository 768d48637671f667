"""The offline planner: what answers when OPENAI_API_KEY is unset, so everything works offline.

`plan(text)` is a pure, deterministic parser: it maps the common intents (position, portfolio, quote, P&L over a
period, orders, alerts create/list/delete, buy/sell proposals, plan, charts) to the same tool calls the model would
make, with arguments validated by each tool's own argument model. Anything it doesn't understand gets help text, never
a guess; a request missing one thing ("buy tsla") gets a short question.

`run_planner(ctx, text)` executes a plan through `tools.registry.run_tool`, exactly like the model loop, and renders
the reply from the results (`tools.replies.render_reply`).

How it reads a message, in order:
1. Bad input first: empty, over `MAX_CHARS`, no letters (emoji, punctuation), or mostly non-Latin letters -> help.
2. Normalisation: lowercase, curly quotes, phrases folded into one token ("p&l" -> pnl, "s&p 500" -> spy,
   "stop limit" -> stoplimit, "good till canceled" -> gtc, "year to date" -> ytd, "all time" -> alltime).
3. Tokens: words and numbers ("3,200", "$250", "3.2k", "100k", "5%", "-5%").
4. Typos: a word that is not in the vocabulary (keywords, company names, common English words) is replaced by the
   single vocabulary word within Damerau-Levenshtein distance 1 (words of 4-7 letters) or 2 (8 and more). Ties between
   words that mean different things are left alone; "buy" and "sell" are never the target of a correction.
5. Symbols: tickers (any case, with or without $), company names, crypto pairs in any spelling (btc-usdt, BTC/USDT,
   btcusdt, "btc usdt"); a bare crypto base (btc, bitcoin) is the USD pair. An unlisted ticker is passed on only when
   written in capitals or as a $cashtag (the tool then says it isn't listed).
6. Intent: the first rule that matches, in the order of `_RULES` (help, alerts, cancel an order, buy/sell, chart,
   plan, orders, P&L, position, portfolio, quote); no rule -> help.

Periods (get_pnl takes day/week/month/year/all; week, month and year are rolling 7, 30 and 365 days):
    today, day, daily, so far           -> day      (since midnight in the user's time zone)
    week, weekly, 7 days                -> week     ("last week" and "this week" both mean the past 7 days)
    month, monthly, 30 days, mtd        -> month    ("last month" means the past 30 days, not the calendar month)
    year, 12 months, 365 days, ytd      -> year     (ytd is approximated by the past 365 days)
    all time, ever, total, overall, since I started -> all
    no period                           -> day      (the tool's default)
    yesterday, a named month, "3 days"  -> a question: the tool can't answer those exactly
Chart periods (1d/1w/1m/3m/1y): today/day -> 1d, week -> 1w, month -> 1m, quarter/3 months -> 3m, year/ytd -> 1y.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import ValidationError

from tools.catalog import BY_NAME, JsonDict
from tools.context import ToolContext
from tools.registry import ToolResult, run_tool
from tools.replies import describe_alert, describe_order, render_reply

MAX_CHARS = 1000  # Discord allows 2000 (4000 with Nitro); nothing we understand is this long
AMBIGUOUS = "ambiguousnumber"  # the token for "1,2" (a decimal comma?) or "1.2.3": never guessed

HELP = (
    'I can help with: quotes ("price of btc"), your portfolio or a position ("how is my AAPL position"), '
    'P&L ("p&l this week"), orders ("buy 10 tsla", "sell 0.5 eth at 3200", "open orders", '
    '"cancel my MSFT order"), alerts ("alert me if ETH drops 5%", "show my alerts", "delete my AAPL alert"), '
    'charts ("chart of btc this week") and your plan ("what plan am I on").'
)
HELP_EMPTY = 'Say something like "price of btc", "my portfolio" or "buy 10 tsla". ' + HELP
HELP_LONG = f"That message is too long for me (over {MAX_CHARS} characters): ask one thing at a time. " + HELP
HELP_LANGUAGE = "Sorry, I only understand English requests. " + HELP
HELP_NO_TEXT = "I can only read words, not emoji or symbols. " + HELP
HELP_UNKNOWN = "Sorry, I didn't understand that. " + HELP

# -- plan types -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One tool call with arguments exactly as the tool's argument model accepts them (validated at creation)."""

    name: str
    args: JsonDict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A planner bug must not emit invalid arguments: validate with the tool's own model (raises ValidationError).
        BY_NAME[self.name].args.model_validate(self.args)

    def describe(self) -> JsonDict:
        return {"tool": self.name, "args": dict(self.args)}


@dataclass(frozen=True)
class PickIds:
    """Call `name` (delete_alert or cancel_order) on the ids in the previous step's list whose symbol matches.

    `symbol` None matches every item; `id_prefix` picks by id; `every` acts on all matches, otherwise several matches
    make the runner ask which one.
    """

    name: Literal["delete_alert", "cancel_order"]
    symbol: str | None = None
    id_prefix: str | None = None
    every: bool = False

    def describe(self) -> JsonDict:
        pick: JsonDict = {}
        if self.symbol:
            pick["symbol"] = self.symbol
        if self.id_prefix:
            pick["id"] = self.id_prefix
        if self.every:
            pick["every"] = True
        return {"tool": self.name, "pick": pick}


@dataclass(frozen=True)
class SellHeld:
    """Propose selling the whole quantity the previous get_position step reports as held."""

    symbol: str
    type: Literal["market", "limit"] = "market"
    limit_price: str | None = None

    def describe(self) -> JsonDict:
        args: JsonDict = {"symbol": self.symbol, "side": "sell", "qty": "held"}
        if self.limit_price:
            args |= {"type": self.type, "limit_price": self.limit_price}
        return {"tool": "propose_order", "args": args}


@dataclass(frozen=True)
class AlertAtLevel:
    """Create an alert at `value`: above if it lies above the previous get_quote step's price, else below."""

    symbol: str
    value: str
    recurring: bool = False

    def describe(self) -> JsonDict:
        args: JsonDict = {"symbol": self.symbol, "condition": "above|below", "value": self.value}
        if self.recurring:
            args["recurring"] = True
        return {"tool": "create_alert", "args": args}


Step = ToolCall | PickIds | SellHeld | AlertAtLevel


@dataclass(frozen=True)
class Plan:
    """Either steps to run or a reply to give without calling anything (help, or a clarifying question)."""

    steps: tuple[Step, ...] = ()
    reply: str | None = None
    kind: Literal["tools", "help", "clarify"] = "tools"

    def describe(self) -> list[JsonDict] | str:
        """The comparable form used by the labelled set: a list of steps, or "help" / "clarify"."""
        if self.kind != "tools":
            return self.kind
        return [s.describe() for s in self.steps]


def _help(text: str = HELP_UNKNOWN) -> Plan:
    return Plan(reply=text, kind="help")


def _ask(text: str) -> Plan:
    return Plan(reply=text, kind="clarify")


def _calls(*steps: Step) -> Plan:
    return Plan(steps=steps)


# -- vocabulary -----------------------------------------------------------------------------------------------------

SYMBOL_ALIASES: dict[str, str] = {
    "aapl": "AAPL", "apple": "AAPL",
    "msft": "MSFT", "microsoft": "MSFT",
    "nvda": "NVDA", "nvidia": "NVDA",
    "amzn": "AMZN", "amazon": "AMZN",
    "googl": "GOOGL", "goog": "GOOGL", "google": "GOOGL", "alphabet": "GOOGL",
    "meta": "META", "facebook": "META", "fb": "META",
    "tsla": "TSLA", "tesla": "TSLA",
    "jpm": "JPM", "jpmorgan": "JPM", "chase": "JPM",
    "spy": "SPY", "sp500": "SPY",
    "btc": "BTC", "bitcoin": "BTC", "xbt": "BTC",
    "eth": "ETH", "ethereum": "ETH", "ether": "ETH",
}  # fmt: skip
CRYPTO_BASES = {"BTC", "ETH"}
QUOTE_CURRENCIES = {"usd": "USD", "usdt": "USDT", "tether": "USDT", "dollar": "USD", "dollars": "USD"}
_PAIR = re.compile(r"^(btc|eth|bitcoin|ethereum|xbt)[-/]?(usdt|usd)$")
# Capitalised words that look like tickers but aren't.
NOT_TICKERS = {
    "I", "A", "OK", "USD", "USDT", "UTC", "PNL", "P", "L", "PL", "GTC", "IOC", "ETF", "AM", "PM", "CEO", "ID", "YTD",
    "MTD", "ATH", "DM", "PLS", "THX", "LOL", "AI", "TV", "US", "USA", "EU", "UK", "ASAP", "FYI", "IRA", "IPO", "OMG",
}  # fmt: skip

PHRASES: list[tuple[str, str]] = [
    (r"\bp\s*&\s*l\b|\bp\s*/\s*l\b|\bp\s+and\s+l\b|\bpnl\b|\bp&amp;l\b", " pnl "),
    (r"\bprofit\s*(?:and|&|/)\s*loss\b", " pnl "),
    (r"\bs\s*&\s*p(?:\s*500)?\b|\bs\s+and\s+p(?:\s*500)?\b|\bsp\s*500\b|\bsnp(?:\s*500)?\b", " sp500 "),
    (r"\bjp\s*morgan\b|\bj\.?p\.?\s*morgan\b", " jpmorgan "),
    (r"\bstop[\s-]+limit\b", " stoplimit "),
    (r"\bstop[\s-]+loss\b", " stop "),
    (r"\bgood\s+(?:till|til|until|'til)\s+cancell?ed\b|\bgood\s+(?:till|til|until)\s+cancel\b", " gtc "),
    (r"\bimmediate\s+or\s+cancel\b", " ioc "),
    (r"\byear\s+to\s+date\b", " ytd "),
    (r"\bmonth\s+to\s+date\b", " mtd "),
    (r"\ball[\s-]+time\b", " alltime "),
    (r"\bnet\s+worth\b", " networth "),
    (r"\bbuying\s+power\b", " buyingpower "),
    (r"\bget\s+rid\s+of\b", " remove "),
    (r"\bturn\s+off\b|\bshut\s+off\b", " disable "),
    (r"\bpick\s+up\b", " buy "),
    (r"\bload\s+up\s+on\b", " buy "),
    (r"\bsell\s+off\b", " sell "),
    (r"\blet\s+me\s+know\b|\btell\s+me\b|\bnotify\s+me\b|\bping\s+me\b|\bdm\s+me\b|\bmessage\s+me\b|\btext\s+me\b"
     r"|\bwarn\s+me\b|\bremind\s+me\b|\bgive\s+me\s+a\s+heads?\s*up\b|\bbuzz\s+me\b", " notifyme "),
    (r"\bevery\s+time\b|\beach\s+time\b", " whenever "),
    (r"\bthree\s+months\b|\b3\s*months?\b|\b90\s*days?\b|\bquarter\b", " quarter "),
    (r"\b(?:7|seven)\s*days?\b", " week "),
    (r"\b(?:30|thirty)\s*days?\b", " month "),
    (r"\b(?:365\s*days?|12\s*months?|twelve\s+months)\b", " year "),
    (r"\b(?:1|one|a)\s+(day|week|month|year)\b", r" \1 "),
    (r"\b(?:\d+|two|four|five|six|few|couple\s+of)\s*(?:days|weeks|months|years)\b", " customperiod "),
    (r"\b(?:get|grab|fetch)\s+me\s+(?=[\d.$])", " buy "),
    (r"\b(?:a|good|great|strong|solid|bad)\s+(?:buy|sell)\b", " advice "),
    (r"\bhow\s+much\b", " howmuch "),
    (r"\bhow\s+many\b", " howmany "),
]  # fmt: skip
_PHRASES = [(re.compile(p), r) for p, r in PHRASES]

PERIOD_WORDS: dict[str, str] = {
    "today": "day", "day": "day", "daily": "day", "intraday": "day", "tonight": "day",
    "week": "week", "weekly": "week", "wk": "week", "weeks": "week",
    "month": "month", "monthly": "month", "mtd": "month", "months": "month",
    "year": "year", "yearly": "year", "annual": "year", "ytd": "year", "years": "year", "yr": "year",
    "alltime": "all", "ever": "all", "total": "all", "overall": "all", "lifetime": "all", "inception": "all",
}  # fmt: skip
CHART_PERIODS = {"day": "1d", "week": "1w", "month": "1m", "quarter": "3m", "year": "1y", "all": "1y"}
UNSUPPORTED_PERIODS = {"yesterday", "hour", "hours", "minute", "minutes", "decade", "customperiod"} | {
    "january", "february", "march", "april", "june", "july", "august", "september", "october", "november", "december",
}  # fmt: skip

ALERT_WORDS = {
    "alert",
    "alerts",
    "alerting",
    "alerted",
    "notifyme",
    "alarm",
    "alarms",
    "notification",
    "notifications",
    "notify",
    "ping",
}
DELETE_WORDS = {"delete", "remove", "cancel", "clear", "kill", "disable", "stop", "drop", "scrap", "erase", "del"}
LIST_WORDS = {"show", "list", "what", "whats", "which", "any", "see", "view", "active", "have", "howmany", "my", "all"}
ABOVE_WORDS = {"above", "over", "exceeds", "exceed", "higher", "rises", "rise", "climbs", "climb", "breaks", "tops",
               "past", "beyond", "surpasses", "pumps", "moons", "gt"}  # fmt: skip
BELOW_WORDS = {"below", "under", "lower", "drops", "drop", "falls", "fall", "dips", "dip", "sinks", "beneath",
               "crashes", "tanks", "declines", "lt", "underneath"}  # fmt: skip
UP_WORDS = {"rises", "rise", "up", "gains", "gain", "jumps", "jump", "climbs", "climb", "pumps", "increases",
            "increase", "moons", "spikes", "rallies", "higher", "grows", "goes up"}  # fmt: skip
DOWN_WORDS = {"drops", "drop", "falls", "fall", "down", "dips", "dip", "declines", "decline", "loses", "lose",
              "crashes", "tanks", "sinks", "decreases", "decrease", "dumps", "lower", "plunges", "slides"}  # fmt: skip
EITHER_WORDS = {"moves", "move", "changes", "change", "swings", "swing"}
RECURRING_WORDS = {"whenever", "recurring", "repeat", "repeating", "always", "everytime"}
BUY_WORDS = {"buy", "purchase", "long", "acquire", "grab", "buying", "purchasing"}
SELL_WORDS = {"sell", "dump", "unload", "offload", "selling", "liquidate", "short"}
ADVICE_WORDS = {"should", "recommend", "advice", "advise", "suggest", "invest", "investing", "tip", "tips"}
CLOSE_WORDS = {"close", "exit", "flatten", "liquidate"}
ALL_WORDS = {"all", "everything", "entire", "whole", "every"}
ORDER_WORDS = {"order", "orders", "trades", "fills", "fill"}
CHART_WORDS = {"chart", "graph", "plot", "candles", "candlestick", "sparkline"}
PLAN_WORDS = {"plan", "subscription", "tier", "pro", "premium", "upgrade", "subscribed", "quota", "membership"}
PNL_WORDS = {"pnl", "profit", "profits", "loss", "losses", "gain", "gains", "make", "made", "earn", "earned", "lose",
             "lost", "return", "returns", "performance", "perform", "performed", "performing", "pl"}  # fmt: skip
POSITION_WORDS = {"position", "positions", "holding", "holdings", "shares", "stake", "own", "hold", "bag", "stack"}
PORTFOLIO_WORDS = {"portfolio", "account", "balance", "equity", "cash", "networth", "buyingpower", "money",
                   "holdings", "positions", "overview", "summary", "funds", "wallet", "portfolios"}  # fmt: skip
QUOTE_WORDS = {"price", "quote", "trading", "worth", "cost", "costs", "value", "prices", "quotes", "rate", "going",
               "doing", "at", "trade", "ticker", "howmuch", "px", "level", "now", "currently", "today", "up",
               "down"}  # fmt: skip
HELP_WORDS = {"help", "commands", "hi", "hello", "hey", "yo", "thanks", "thank", "thx", "ty", "start", "menu", "usage",
              "howdy", "sup", "hiya"}  # fmt: skip
# Words a bare-symbol message may contain and still be a quote request ("eth?", "what about btc", "tsla now").
FILLER = {"what", "whats", "about", "how", "hows", "is", "the", "on", "for", "of", "a", "me", "show", "check", "and",
          "get", "give", "please", "pls", "now", "right", "currently", "s", "rn", "today", "at", "looking",
          "look", "tell", "current", "latest", "info", "update", "status", "any", "vs", "versus",
          "compare", "or", "with", "to", "so", "ok", "okay", "hey", "yo", "quick", "just", "lookup", "look up", "up",
          "in", "like", "stock", "shares", "share", "coin", "token", "crypto"}  # fmt: skip
COMMON = {
    "the", "a", "an", "is", "are", "was", "were", "be", "been", "am", "i", "im", "me", "my", "mine", "you", "your",
    "we", "our", "it", "its", "this", "that", "these", "those", "what", "whats", "which", "who", "whos", "how", "hows",
    "when", "where", "why", "if", "then", "than", "and", "or", "but", "not", "no", "yes", "do", "does", "did", "done",
    "have", "has", "had", "can", "could", "would", "should", "will", "shall", "may", "might", "must", "to", "of", "in",
    "on", "at", "by", "for", "from", "with", "about", "as", "into", "onto", "up", "down", "out", "off", "so", "too",
    "very", "just", "only", "also", "now", "right", "still", "yet", "again", "ever", "never", "some", "any", "all",
    "each", "every", "both", "few", "more", "most", "much", "many", "less", "least", "other", "another", "such", "own",
    "same", "new", "old", "last", "past", "next", "first", "there", "here", "want", "wanna", "need",
    "like", "please", "pls", "plz", "thanks", "get", "got", "give", "gimme", "show", "tell", "let", "know", "see",
    "look", "looking", "check", "make", "made", "go", "goes", "going", "gone", "went", "come", "comes", "take", "put",
    "place", "set", "setup", "create", "add", "one", "two", "three", "half", "shares", "share", "units",
    "unit", "coins", "coin", "worth", "price", "market", "limit", "stop", "hits", "hit", "reaches", "reach", "touches",
    "touch", "crosses", "cross", "gets", "trading", "today", "week", "month", "year", "day", "time", "since",
    "open", "opened", "pending", "working", "filled", "closed", "canceled", "cancelled", "history", "recent", "latest",
    "currently", "current", "pm", "ok", "okay", "yeah", "hey", "hi", "hello", "well", "good", "bad", "great",
    "doing", "feel", "think", "buy", "sell", "bought", "sold", "order", "orders", "alert", "alerts", "ping",
    "position", "positions", "portfolio", "cash", "money", "total", "balance", "howmuch", "howmany", "lot",
    "per", "cent", "percent", "pct", "usd", "usdt", "dollar", "dollars", "bucks", "k", "m", "them", "they", "their",
    "him", "her", "his", "she", "he", "us", "quickly", "asap", "soon", "later", "tomorrow", "yesterday", "tonight",
    "whole", "entire", "everything", "rest", "remaining", "nothing", "something", "anything", "thing", "things",
    "say", "said", "help", "compare", "versus", "vs", "between", "mean", "means", "ago", "back",
    "chart", "plan", "pro", "free", "tier", "level", "levels", "value", "cost", "costs", "rate", "quote",
    "above", "below", "over", "under", "drops", "drop", "falls", "fall", "rises", "rise", "moves", "move", "stock",
    "stocks", "crypto", "ticker", "symbol", "fast", "slow", "high", "low", "higher", "lower", "before", "after",
    "pair", "spot", "sure", "cool", "nice", "hmm", "um", "uh", "lol", "ya", "yo", "sup", "dont",
    "doesnt", "didnt", "cant", "wont", "isnt", "arent", "ive", "id", "ill", "youre", "hes", "shes", "theyre",
}  # fmt: skip
# Words a typo may be corrected into (never buy/sell: a trade must be spelled out).
CORRECTABLE = (
    ALERT_WORDS | DELETE_WORDS | ORDER_WORDS | CHART_WORDS | PLAN_WORDS | PNL_WORDS | POSITION_WORDS | PORTFOLIO_WORDS
    | {"price", "quote", "prices", "quotes", "alerts", "notifyme", "subscription", "cancel", "delete", "remove",
       "above", "below", "drops", "falls", "rises", "today", "week", "month", "year", "limit", "stoplimit", "whats",
       "yesterday", "performance", "purchase", "pending", "filled", "canceled", "history", "holdings", "recurring",
       "whenever", "bitcoin", "ethereum", "ether", "apple", "microsoft", "nvidia", "amazon", "google", "alphabet",
       "facebook", "tesla", "jpmorgan", "portfolio", "position", "balance", "account"}
) - {"pl", "own", "hold", "bag", "stack", "made", "make", "lose", "lost", "earn", "gain", "cash", "money", "pro",
     "plan", "tier", "fill", "fills", "trade", "trades", "stop", "drop", "del", "ping", "clear", "kill", "funds",
     "equity", "stake", "plot", "meta"}  # fmt: skip
VOCAB = (
    set(SYMBOL_ALIASES)
    | set(QUOTE_CURRENCIES)
    | set(PERIOD_WORDS)
    | UNSUPPORTED_PERIODS
    | ALERT_WORDS
    | DELETE_WORDS
    | LIST_WORDS
    | ABOVE_WORDS
    | BELOW_WORDS
    | UP_WORDS
    | DOWN_WORDS
    | EITHER_WORDS
    | RECURRING_WORDS
    | BUY_WORDS
    | SELL_WORDS
    | ALL_WORDS
    | ORDER_WORDS
    | CHART_WORDS
    | PLAN_WORDS
    | PNL_WORDS
    | POSITION_WORDS
    | PORTFOLIO_WORDS
    | QUOTE_WORDS
    | HELP_WORDS
    | FILLER
    | COMMON
    | set(CHART_PERIODS)
    | ADVICE_WORDS
    | CLOSE_WORDS
    | {"gtc", "ioc", "stoplimit", "quarter", "news", AMBIGUOUS}
)


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def _meaning(word: str) -> str:
    """Words that mean the same thing count as one candidate ("appl" is one step from both aapl and apple)."""
    return SYMBOL_ALIASES.get(word, word.rstrip("s"))


def correct(word: str) -> str:
    """`word`, or the one vocabulary word it is a typo of (see the module docstring for the rule)."""
    if word in VOCAB or len(word) < 4 or not word.isalpha():
        return word
    limit = 1 if len(word) < 8 else 2
    best: dict[str, str] = {}
    best_distance = limit + 1
    for target in CORRECTABLE | {a for a in SYMBOL_ALIASES if len(a) >= 4}:
        if abs(len(target) - len(word)) > limit:
            continue
        d = edit_distance(word, target)
        if d < best_distance:
            best, best_distance = {_meaning(target): target}, d
        elif d == best_distance:
            best.setdefault(_meaning(target), target)
    if len(best) == 1 and best_distance <= limit:
        return next(iter(best.values()))
    return word


# -- tokens ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    text: str  # the (corrected) word, or the number's original spelling
    number: Decimal | None = None
    percent: bool = False
    dollars: bool = False
    capital: bool = False  # written in capitals or as a $cashtag in the original (a possible unlisted ticker)
    signed: int = 0  # -1 / +1 for an explicit sign on a number


_TOKEN = re.compile(
    r"(?P<id>(?<![a-z0-9])(?=[0-9a-f]{8})(?=[0-9a-f-]*[a-f])(?=[0-9a-f-]*\d)[0-9a-f]{8}(?:-[0-9a-f]{4}){0,3}"
    r"(?:-[0-9a-f]{12})?(?![a-z0-9]))"
    r"|(?P<num>[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\$?\.\d+)(?P<suffix>k|m|mm)?(?![a-z0-9])(?P<pct>\s?%)?"
    r"|(?P<cash>\$[a-z]{1,5})(?![a-z])"
    r"|(?P<word>[a-z][a-z0-9]*(?:[-/][a-z0-9]+)?)"
    r"|(?P<op>[<>@])"
)
_ID = re.compile(r"^[0-9a-f]{8}(?:-[0-9a-f]{4}){0,3}(?:-[0-9a-f]{12})?$")


def _number(text: str, suffix: str | None) -> Decimal | None:
    try:
        value = Decimal(text.replace(",", "").replace("$", "").lstrip("+"))
    except InvalidOperation:
        return None
    if suffix == "k":
        value *= 1000
    elif suffix in ("m", "mm"):
        value *= 1_000_000
    return value


def tokenize(text: str) -> list[Token]:
    capitals = {w.lower() for w in re.findall(r"(?<![A-Za-z$])\$?[A-Z]{1,5}(?![A-Za-z])", text)}
    shouting = len(re.findall(r"[A-Za-z]+", text)) > 2 and not any(c.islower() for c in text)
    capitals = {w.lstrip("$") for w in capitals if w.startswith("$") or (w.upper() not in NOT_TICKERS and not shouting)}
    lowered = text.lower().replace("’", "'").replace("‘", "'").replace("`", "'").replace("“", '"').replace("”", '"')
    lowered = re.sub(r"(\w)'(\w)", r"\1\2", lowered)  # what's -> whats, don't -> dont
    for pattern, replacement in _PHRASES:
        lowered = pattern.sub(replacement, lowered)
    tokens: list[Token] = []
    for m in _TOKEN.finditer(lowered):
        if m["id"]:
            tokens.append(Token(m["id"]))
        elif m["num"]:
            raw = m["num"]
            if re.match(r",\d", lowered[m.end() : m.end() + 2]) or re.match(r"\.\d", lowered[m.end() : m.end() + 2]):
                tokens.append(Token(AMBIGUOUS))  # "1,2" or "1.2.3": a decimal comma? don't guess
                continue
            value = _number(raw, m["suffix"])
            if value is None:
                continue
            sign = -1 if raw.startswith("-") else 1 if raw.startswith("+") else 0
            tokens.append(Token(raw, value, percent=bool(m["pct"]), dollars="$" in raw, signed=sign))
        elif m["cash"]:
            tokens.append(Token(m["cash"][1:], capital=True))
        elif m["word"]:
            word = m["word"]
            fixed = correct(word) if "-" not in word and "/" not in word else word
            tokens.append(Token(fixed, capital=word in capitals and fixed == word))
        elif m["op"]:
            tokens.append(Token({"<": "lt", ">": "gt", "@": "at"}[m["op"]]))
    return tokens


# -- reading a message ----------------------------------------------------------------------------------------------


@dataclass
class Reading:
    tokens: list[Token]
    words: list[str]
    symbols: list[str]  # canonical, in order of appearance, no duplicates
    symbol_at: dict[int, str]  # token index -> canonical symbol

    def has(self, *groups: set[str] | str) -> bool:
        for g in groups:
            if isinstance(g, str):
                if g in self.words:
                    return True
            elif g.intersection(self.words):
                return True
        return False

    def period(self) -> str | None:
        for w in self.words:
            if w in PERIOD_WORDS:
                return PERIOD_WORDS[w]
        if "quarter" in self.words:
            return "quarter"
        if ("so" in self.words and "far" in self.words) or ("since" in self.words and "started" in self.words):
            return "day" if "so" in self.words else "all"
        return None

    def numbers(self) -> list[tuple[int, Token]]:
        return [(i, t) for i, t in enumerate(self.tokens) if t.number is not None]

    def ids(self) -> list[str]:
        return [t.text for t in self.tokens if _ID.match(t.text)]


def read(tokens: list[Token]) -> Reading:
    words = [t.text for t in tokens if t.number is None]
    symbols: list[str] = []
    symbol_at: dict[int, str] = {}
    for i, t in enumerate(tokens):
        if t.number is not None:
            continue
        symbol: str | None = None
        pair = _PAIR.match(t.text)
        if pair:
            symbol = f"{SYMBOL_ALIASES[pair[1]]}-{pair[2].upper()}"
        elif t.text in SYMBOL_ALIASES:
            symbol = SYMBOL_ALIASES[t.text]
            if symbol in CRYPTO_BASES:
                # "btc usdt", "btc in usdt", "btc/usdt": the quote currency within the next two words; default USD.
                following = [x.text for x in tokens[i + 1 : i + 3]]
                quote = next((QUOTE_CURRENCIES[w] for w in following if w in QUOTE_CURRENCIES), "USD")
                symbol = f"{symbol}-{quote}"
        elif t.capital and t.text.isalpha() and t.text not in VOCAB:
            symbol = t.text.upper()  # an unlisted ticker, typed in capitals: the tool says whether it exists
        if symbol:
            symbol_at[i] = symbol
            if symbol not in symbols:
                symbols.append(symbol)
    return Reading(tokens, words, symbols, symbol_at)


def _fmt(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _bad_input(text: str) -> Plan | None:
    stripped = text.strip()
    if not stripped:
        return _help(HELP_EMPTY)
    if len(stripped) > MAX_CHARS:
        return _help(HELP_LONG)
    letters = [c for c in stripped if c.isalpha()]
    if not letters:
        return None if any(c.isdigit() for c in stripped) else _help(HELP_NO_TEXT)
    latin = sum(1 for c in letters if c.isascii() or unicodedata.name(c, "").startswith("LATIN"))
    if latin * 2 < len(letters):
        return _help(HELP_LANGUAGE)
    return None


def plan(text: str) -> Plan:
    """The plan for one message: tool steps, or a help / clarifying reply. Pure and deterministic."""
    bad = _bad_input(text)
    if bad is not None:
        return bad
    r = read(tokenize(text))
    if not r.tokens:
        return _help(HELP_NO_TEXT)
    if AMBIGUOUS in r.words:
        return _ask("I couldn't read a number there: write decimals with a point (0.5) and thousands with a comma "
                    "(1,200) or without (1200).")  # fmt: skip
    symbol_words = {r.tokens[i].text for i in r.symbol_at}
    unknown = [w for w in r.words if w not in VOCAB and w not in symbol_words and not _ID.match(w)]
    if len(unknown) >= 2 and len(unknown) * 2 > len(r.words):
        return _help()  # mostly words we don't know (another language, or another topic): don't guess
    for rule in _RULES:
        try:
            result = rule(r)
        except ValidationError as exc:
            # What the user asked for doesn't make a valid call ("buy 1 tsla at 0"): say why, call nothing.
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return _ask(f"{where}: {first['msg']}".removeprefix(f"{where}: Value error, "))
        if result is not None:
            return result
    return _help()


# -- rules, tried in order ------------------------------------------------------------------------------------------


def _rule_help(r: Reading) -> Plan | None:
    if r.has("help", "commands", "menu", "usage") or (
        set(r.words) <= HELP_WORDS | FILLER | {"there", "you", "can", "do", "what", "bot", "much"} and not r.symbols
    ):
        if r.symbols or r.has(ALERT_WORDS, ORDER_WORDS, PORTFOLIO_WORDS, PNL_WORDS, BUY_WORDS, SELL_WORDS):
            return None
        return _help(HELP)
    if r.has("what") and r.has("can") and r.has("you") and r.has("do") and not r.symbols:
        return _help(HELP)
    return None


def _rule_advice(r: Reading) -> Plan | None:
    if r.has(ADVICE_WORDS) and not r.has(ALERT_WORDS):
        return _help("I can't tell you what to trade: that's your call. " + HELP)
    return None


def _is_alert(r: Reading) -> bool:
    if r.has(ALERT_WORDS):
        return True
    # "when apple goes above 250" / "if eth drops below 3k": a condition on a price with a number, no trade verb.
    return (
        r.has("when", "if", "once", "whenever")
        and bool(r.symbols)
        and bool(r.numbers())
        and not r.has(BUY_WORDS, SELL_WORDS, ORDER_WORDS)
        and r.has(ABOVE_WORDS | BELOW_WORDS | UP_WORDS | DOWN_WORDS | {"hits", "hit", "reaches", "touches", "crosses"})
    )


def _rule_alert(r: Reading) -> Plan | None:
    if not _is_alert(r):
        return None
    numbers = [t for _, t in r.numbers()]
    if r.has("can") and r.has("howmany", "max", "maximum", "limit", "quota") and not numbers:
        return _calls(ToolCall("get_plan"))  # "how many alerts can I have": the plan's quota
    deleting = r.has(DELETE_WORDS) and not (r.has("drop", "drops") and numbers)
    if deleting:
        ids = r.ids()
        every = r.has(ALL_WORDS) or (not ids and r.has("alerts", "alarms"))
        steps: list[Step] = [ToolCall("list_alerts")]
        if r.symbols and len(r.symbols) > 1:
            steps += [PickIds("delete_alert", symbol=s, every=every) for s in r.symbols]
        else:
            steps.append(
                PickIds(
                    "delete_alert",
                    symbol=r.symbols[0] if r.symbols else None,
                    id_prefix=ids[0] if ids else None,
                    every=every,
                )
            )
        return _calls(*steps)
    if not numbers:
        if r.symbols and not r.has(LIST_WORDS - {"my", "all"}) and not r.has("alerts"):
            return _ask(f"At what price (or percent move) should I alert you about {r.symbols[0]}?")
        if not r.has(ALERT_WORDS - {"notifyme", "ping", "notify"}):
            return None  # "tell me a joke": a notify phrase alone isn't about alerts
        return _calls(ToolCall("list_alerts"))
    if not r.symbols:
        return _ask("An alert on which symbol? For example: alert me if ETH drops 5%.")
    symbol = r.symbols[0]
    recurring = r.has(RECURRING_WORDS)
    extra: JsonDict = {"recurring": True} if recurring else {}
    pct = next((t for t in numbers if t.percent), None)
    if pct is None and r.has("percent", "pct", "cent"):
        pct = numbers[0]
    if pct is not None:
        assert pct.number is not None
        magnitude = abs(pct.number)
        if pct.signed:
            sign = pct.signed
        elif r.has(DOWN_WORDS | {"below", "under"}):
            sign = -1
        elif r.has(UP_WORDS | {"above", "over"}):
            sign = 1
        else:
            return _ask(f"Up or down? Say for example: alert me if {symbol} drops {_fmt(magnitude)}%.")
        value = _fmt(magnitude if sign > 0 else -magnitude)
        return _calls(ToolCall("create_alert", {"symbol": symbol, "condition": "move", "value": value} | extra))
    level = numbers[0]
    assert level.number is not None
    value = _fmt(level.number)
    if r.has("above", "over", "exceeds", "exceed", "gt", "beyond", "past", "surpasses", "tops", "breaks", "higher"):
        condition = "above"
    elif r.has("below", "under", "lt", "beneath", "underneath", "lower") or r.has(DOWN_WORDS):
        condition = "below"
    elif r.has(UP_WORDS):
        condition = "above"
    else:
        return _calls(ToolCall("get_quote", {"symbol": symbol}), AlertAtLevel(symbol, value, recurring))
    return _calls(ToolCall("create_alert", {"symbol": symbol, "condition": condition, "value": value} | extra))


def _rule_cancel_order(r: Reading) -> Plan | None:
    if not (
        r.has("cancel", "kill", "pull", "withdraw", "remove", "delete", "scrap") and r.has(ORDER_WORDS | {"limit"})
    ):
        return None
    ids = r.ids()
    every = r.has(ALL_WORDS) or (not ids and r.has("orders"))
    steps: list[Step] = [ToolCall("list_orders", {"status": "open"})]
    if len(r.symbols) > 1:
        steps += [PickIds("cancel_order", symbol=s, every=every) for s in r.symbols]
    else:
        steps.append(
            PickIds(
                "cancel_order",
                symbol=r.symbols[0] if r.symbols else None,
                id_prefix=ids[0] if ids else None,
                every=every,
            )
        )
    return _calls(*steps)


def _price_after(
    r: Reading, words: set[str], taken: frozenset[int] | set[int] = frozenset()
) -> tuple[Decimal | None, set[int]]:
    """The number following one of `words` (within two tokens), not one already `taken`, and the index it used."""
    for i, t in enumerate(r.tokens):
        if t.number is None and t.text in words:
            for j in range(i + 1, min(i + 4, len(r.tokens))):
                if j in taken:
                    break
                if r.tokens[j].number is not None and not r.tokens[j].percent:
                    return r.tokens[j].number, {j}
                if r.tokens[j].text not in {"at", "price", "of", "a", "the", "for", "to", "around", "gt", "lt"}:
                    break
    return None, set()


def _rule_close(r: Reading) -> Plan | None:
    """ "close my tsla position", "exit my eth": sell the whole quantity held."""
    if r.has(CLOSE_WORDS) and len(r.symbols) == 1 and not r.numbers() and r.has("my", "position", "out"):
        return _calls(ToolCall("get_position", {"symbol": r.symbols[0]}), SellHeld(r.symbols[0]))
    return None


def _rule_trade_typo(r: Reading) -> Plan | None:
    """ "sel 5 aapl": a word one letter away from buy or sell next to a quantity and a symbol. Trades are never
    corrected silently: ask."""
    if not (r.symbols and r.numbers()):
        return None
    for w in r.words:
        if w in VOCAB or w in SYMBOL_ALIASES:
            continue
        for verb in ("buy", "sell"):
            if edit_distance(w, verb) <= 1:
                qty = _fmt(r.numbers()[0][1].number or Decimal(0))
                return _ask(f"Did you mean: {verb} {qty} {r.symbols[0]}? Say it again with {verb} spelled out.")
    return None


def _rule_trade(r: Reading) -> Plan | None:
    buying, selling = r.has(BUY_WORDS), r.has(SELL_WORDS)
    if not (buying or selling) or (buying and selling):
        return None
    # Questions about the past are about orders, not new ones: "what did I buy", "have I sold anything".
    if r.has("did", "bought", "sold") or (r.has("have", "has") and r.has("i") and r.has("what", "when", "anything")):
        return None
    side = "buy" if buying else "sell"
    if r.has("short") and not buying:
        return _ask("Short selling isn't enabled for paper accounts: you can sell what you hold.")
    symbol = r.symbols[0] if r.symbols else None
    if len(r.symbols) > 1:
        return _ask(f"One order at a time, please: which symbol do you want to {side}, {' or '.join(r.symbols)}?")
    stoplimit, sl_used = _price_after(r, {"stoplimit"})
    stop, stop_used = _price_after(r, {"stop"}, sl_used)
    limit, limit_used = _price_after(r, {"limit", "lmt", "at", "for", "@"}, sl_used | stop_used)
    used = stop_used | limit_used | sl_used
    qty_tokens = [(i, t) for i, t in r.numbers() if i not in used and not t.percent]
    if any(t.dollars for _, t in qty_tokens):
        what = symbol or "it"
        return _ask(f"I take quantities, not dollar amounts: how many {what} do you want to {side}?")
    if r.has(ALL_WORDS) and side == "sell" and symbol and not qty_tokens:
        if stop is not None or stoplimit is not None:
            return _ask("Say the quantity for a stop order, for example: sell 10 TSLA stop 180.")
        held = SellHeld(symbol, "limit", _fmt(limit)) if limit is not None else SellHeld(symbol)
        return _calls(ToolCall("get_position", {"symbol": symbol}), held)
    if symbol is None:
        if qty_tokens:
            return _ask(f"{side.capitalize()} {_fmt(qty_tokens[0][1].number or Decimal(0))} of what? Say e.g. "
                        f"{side} 10 TSLA.")  # fmt: skip
        return _ask(f"What do you want to {side}? Say e.g. {side} 10 TSLA or {side} 0.5 ETH at 3200.")
    if not qty_tokens:
        return _ask(f"{side.capitalize()} how many {symbol}? Say e.g. {side} 10 {symbol}.")
    qty = qty_tokens[0][1].number
    assert qty is not None
    if qty <= 0:
        return _ask(f"{side.capitalize()} how many {symbol}? The quantity must be more than zero.")
    args: JsonDict = {"symbol": symbol, "side": side, "qty": _fmt(qty)}
    if stoplimit is not None:
        # "stop limit 180 179": the first number is the stop, the second the limit.
        rest = [t.number for i, t in r.numbers() if i not in used and i != qty_tokens[0][0] and not t.percent]
        if limit is not None:
            args |= {"type": "stop_limit", "stop_price": _fmt(stoplimit), "limit_price": _fmt(limit)}
        elif rest and rest[0] is not None:
            args |= {"type": "stop_limit", "stop_price": _fmt(stoplimit), "limit_price": _fmt(rest[0])}
        else:
            return _ask("A stop-limit needs a stop price and a limit price, e.g. sell 5 AAPL stop 180 limit 179.")
    elif stop is not None and limit is not None:
        args |= {"type": "stop_limit", "stop_price": _fmt(stop), "limit_price": _fmt(limit)}
    elif stop is not None:
        args |= {"type": "stop", "stop_price": _fmt(stop)}
    elif limit is not None:
        args |= {"type": "limit", "limit_price": _fmt(limit)}
    elif r.has("limit", "lmt"):
        return _ask(f"At what limit price? Say e.g. {side} {args['qty']} {symbol} limit 250.")
    if r.has("gtc"):
        args["tif"] = "gtc"
    elif r.has("ioc"):
        args["tif"] = "ioc"
    return _calls(ToolCall("propose_order", args))


def _rule_chart(r: Reading) -> Plan | None:
    if not r.has(CHART_WORDS):
        return None
    period = CHART_PERIODS.get(r.period() or "day", "1d")
    if r.has(PORTFOLIO_WORDS | {"equity", "account", "my"}) and not r.symbols:
        return _calls(ToolCall("get_chart", {"target": "portfolio", "period": period}))
    if not r.symbols:
        return _ask("A chart of what? Say e.g. chart of btc this week, or chart my portfolio.")
    return _calls(*(ToolCall("get_chart", {"target": s, "period": period}) for s in r.symbols))


def _rule_plan(r: Reading) -> Plan | None:
    if not r.has(PLAN_WORDS) or r.symbols:
        return None
    return _calls(ToolCall("get_plan"))


def _rule_orders(r: Reading) -> Plan | None:
    past_trade = r.has("bought", "sold") or (r.has("did") and r.has(BUY_WORDS | SELL_WORDS))
    if not (r.has(ORDER_WORDS) or past_trade):
        return None
    if r.has("history", "all", "every", "past", "previous", "recent", "old"):
        status = "all"
    elif r.has("filled", "executed", "fills", "fill", "completed", "done") or past_trade:
        status = "filled"
    elif r.has("canceled", "cancelled", "rejected", "expired"):
        status = "canceled"
    else:
        status = "open"
    return _calls(ToolCall("list_orders", {"status": status}))


def _rule_pnl(r: Reading) -> Plan | None:
    how_am_i = r.has("how", "hows") and r.has("am", "im") and r.has("doing") and not r.symbols
    if not (r.has(PNL_WORDS) or (r.has("i", "im") and r.has("up", "down") and r.has("am", "im")) or how_am_i):
        return None
    if r.symbols:
        return _calls(*(ToolCall("get_position", {"symbol": s}) for s in r.symbols))
    if r.has(UNSUPPORTED_PERIODS):
        return _ask("I can show P&L for today, the past week (7 days), month (30 days), year (365 days) or all time.")
    period = r.period()
    if period == "quarter":
        return _ask("I can show P&L for today, the past week (7 days), month (30 days), year (365 days) or all time.")
    return _calls(ToolCall("get_pnl", {"period": period or "day"}))


def _rule_position(r: Reading) -> Plan | None:
    if not r.symbols:
        return None
    mine = r.has("my", "i", "im", "mine")
    if not (r.has(POSITION_WORDS) or mine):
        return None
    if r.has(POSITION_WORDS - {"positions", "holdings"}) or mine:
        return _calls(*(ToolCall("get_position", {"symbol": s}) for s in r.symbols))
    return None


def _rule_portfolio(r: Reading) -> Plan | None:
    if r.symbols:
        return None
    if (
        r.has(PORTFOLIO_WORDS)
        or (r.has("my", "i", "im") and r.has("worth", "value", "stocks", "crypto", "coins"))
        or (r.has("what") and r.has("own", "hold", "have") and r.has("i"))
    ):
        return _calls(ToolCall("get_portfolio"))
    return None


def _rule_quote(r: Reading) -> Plan | None:
    if not r.symbols:
        return None
    symbol_words = {r.tokens[i].text for i in r.symbol_at} | set(QUOTE_CURRENCIES)
    others = [w for w in r.words if w not in symbol_words]
    if r.has(QUOTE_WORDS) or all(w in FILLER or w in QUOTE_WORDS for w in others):
        return _calls(*(ToolCall("get_quote", {"symbol": s}) for s in r.symbols))
    return None


_RULES = (
    _rule_help,
    _rule_advice,
    _rule_alert,
    _rule_cancel_order,
    _rule_close,
    _rule_trade,
    _rule_trade_typo,
    _rule_chart,
    _rule_plan,
    _rule_orders,
    _rule_pnl,
    _rule_position,
    _rule_portfolio,
    _rule_quote,
)


# -- running a plan -------------------------------------------------------------------------------------------------


@dataclass
class PlannerReply:
    """What the planner answers: the text, every tool result of the turn (proposals and charts are on the ctx)."""

    text: str
    results: list[ToolResult] = field(default_factory=list)
    kind: Literal["tools", "help", "clarify"] = "tools"


async def run_planner(ctx: ToolContext, text: str) -> PlannerReply:
    """Plan `text` and run it through `run_tool`, as the model loop would; render the reply from the results."""
    p = plan(text)
    if p.kind != "tools":
        return PlannerReply(p.reply or HELP, [], p.kind)
    results: list[ToolResult] = []
    shown: list[ToolResult] = []
    notes: list[str] = []
    previous: ToolResult | None = None
    for step in p.steps:
        if isinstance(step, ToolCall):
            previous = await run_tool(ctx, step.name, step.args)
            results.append(previous)
            shown.append(previous)
            if not previous.ok:
                break
            continue
        assert previous is not None and previous.ok
        lookup = previous
        if lookup in shown:
            shown.remove(lookup)  # a lookup that only served to resolve ids (or a side) isn't shown by itself
        calls, note, ask = _resolve(step, lookup.result)
        if note:
            notes.append(note)
        if ask:
            return PlannerReply(ask, results, "clarify")
        for name, args in calls:
            res = await run_tool(ctx, name, args)
            results.append(res)
            shown.append(res)
    text_out = render_reply(shown, lookups=results)
    if notes:
        text_out = "\n".join([*notes, text_out] if text_out else notes)
    return PlannerReply(text_out, results)


def _short(item_id: str) -> str:
    return item_id[:8]


def _resolve(step: Step, lookup: JsonDict) -> tuple[list[tuple[str, JsonDict]], str | None, str | None]:
    """The calls a resolution step makes from the lookup's result, a note to add, or a question to ask instead."""
    if isinstance(step, PickIds):
        key, id_key = ("alerts", "alert_id") if step.name == "delete_alert" else ("orders", "order_id")
        what = "alert" if step.name == "delete_alert" else "open order"
        items: list[JsonDict] = list(lookup.get(key, []))
        if step.symbol:
            items = [i for i in items if i.get("symbol") == step.symbol]
        if step.id_prefix:
            items = [i for i in items if str(i.get(id_key, "")).startswith(step.id_prefix)]
        label = f"{step.symbol} {what}" if step.symbol else what
        if not items:
            return [], f"You have no {label}" + (f" with id {step.id_prefix}." if step.id_prefix else "."), None
        if len(items) > 1 and not step.every:
            describe = describe_alert if step.name == "delete_alert" else describe_order
            lines = [f"- {_short(str(i[id_key]))}: {describe(i)}" for i in items[:10]]
            verb, noun = ("delete", "alert") if step.name == "delete_alert" else ("cancel", "order")
            every = f"{verb} all my {step.symbol} {noun}s" if step.symbol else f"{verb} all my {noun}s"
            example = f"{verb} {noun} {_short(str(items[0][id_key]))}"
            ask = f'You have {len(items)} {label}s. Which one? Say e.g. "{example}", or "{every}".'
            return [], None, "\n".join([ask, *lines])
        arg = "alert_id" if step.name == "delete_alert" else "order_id"
        return [(step.name, {arg: str(i[id_key])}) for i in items], None, None
    if isinstance(step, SellHeld):
        if not lookup.get("held"):
            return [], None, f"You don't hold any {step.symbol}, so there is nothing to sell."
        args: JsonDict = {"symbol": step.symbol, "side": "sell", "qty": str(lookup["qty"])}
        if step.limit_price:
            args |= {"type": "limit", "limit_price": step.limit_price}
        ToolCall("propose_order", args)  # validates
        return [("propose_order", args)], None, None
    if isinstance(step, AlertAtLevel):
        price = Decimal(str(lookup["price"]))
        value = Decimal(step.value)
        if value == price:
            return [], None, f"{step.symbol} is at {step.value} right now: alert when it goes above or below it?"
        condition = "above" if value > price else "below"
        args = {"symbol": step.symbol, "condition": condition, "value": step.value}
        if step.recurring:
            args["recurring"] = True
        ToolCall("create_alert", args)
        return [("create_alert", args)], None, None
    raise AssertionError(f"not a resolution step: {step!r}")
