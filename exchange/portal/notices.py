"""A word at each access: citizens who opt in are e-mailed when a register releases their data.

The portal is the citizen's agent here, as it is for "who accessed my data" (see
docs/notifications.md for the options weighed and what each party learns):

1. **Opt in.** The citizen, signed in, gives an address and chooses each release or a daily
   digest. A new address gets a link by e-mail first, and nothing else is sent to it until the
   link is opened (``CONFIRM_WITHIN``): a mistyped address must not receive news of someone's
   data. The portal registers a *watch* with the usage service of every register, authorised
   by the citizen's ID token (:mod:`exchange.gateway.watches`); each register keeps only the
   keyed hash of the person, the watch's random id and this portal's subsystem. The address and
   language stay here, keyed by a keyed hash of the person code (``notices.key``).
2. **Follow.** Every ``poll_interval`` seconds the portal asks each register, through its own
   gateway, for the releases about its watched citizens since its cursor (one question per
   register, whatever the number of citizens). Events and the new cursor are stored in one
   transaction: a release is put in the outbox once, keyed by (register, chain, seq), and a
   repeated answer after a crash or a lost reply adds nothing.
3. **Send.** Due outbox rows go to the SMTP server (:mod:`exchange.portal.mail`); a row is marked
   sent when the server took it. A failure leaves it for a later try, sooner at first, then
   every five minutes. The only way to get a message twice is a crash between the server taking
   it and the mark being written; it then carries the same ``Message-ID``.
4. **Opt out.** The subscription and its unsent rows go at once; the registers' watches are
   cancelled, and retried at each poll until every register confirmed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import ColumnElement, Engine, and_, delete, insert, select, update

from exchange.errors import Error, ServiceFailed
from exchange.faults import mapped
from exchange.identity.login import SignedIn
from exchange.portal import letters, models
from exchange.portal.mail import Mailer
from exchange.portal.settings import Notifications
from exchange.web.languages import localised

if TYPE_CHECKING:
    from exchange.portal.app import Portal

log = structlog.get_logger(__name__)
MODES = ("each", "daily")
BATCH = 100  # outbox rows read per pass
KEEP_SENT = timedelta(days=30)  # a sent row answers "already sent?" for this long
CONFIRM_WITHIN = timedelta(days=7)  # how long the link that confirms an address works
RESEND_AFTER = timedelta(minutes=5)  # saving again sooner sends no second link


@dataclass(frozen=True, slots=True)
class Subscription:
    address: str
    language: str
    mode: str
    confirmed: bool = True


@dataclass(frozen=True, slots=True)
class Saved:
    """What became of a citizen's choice."""

    unreachable: list[str]  # registers that could not be asked just now
    # "sent": a new address, its link e-mailed; "failed": the link could not be sent just now;
    # None: the address was confirmed already.
    confirmation: str | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _the_notice(row: Any) -> tuple[ColumnElement[bool], ...]:
    """The outbox row of one release, by its key (register, chain, seq)."""
    table = models.notices
    return (table.c.provider == row.provider, table.c.chain == row.chain, table.c.seq == row.seq)


def next_digest(now: datetime, hour: int) -> datetime:
    """The next daily digest after ``now``, at ``hour`` UTC."""
    due = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return due if due > now else due + timedelta(days=1)


def backoff(attempts: int) -> timedelta:
    """How long an unsent message waits before its next try: 10 s, 20 s, ... up to 5 min."""
    return timedelta(seconds=min(300, 10 * 2 ** min(attempts, 5)))


class Notices:
    def __init__(
        self,
        portal: Portal,
        settings: Notifications,
        *,
        key: bytes,
        mailer: Mailer,
        clock: Callable[[], datetime],
        site: str,
    ) -> None:
        self._portal = portal
        self._settings = settings
        self._key = key
        self._mailer = mailer
        self._clock = clock
        self._engine: Engine = portal.engine
        self._head = letters.Letterhead(
            site=site, public_url=portal.settings.public_url, sender=mailer.sender
        )

    def citizen(self, subject: str) -> str:
        """The keyed hash this portal's notification tables know a person by."""
        return hmac.new(self._key, subject.encode(), hashlib.sha256).hexdigest()

    # -- the citizen's choice --------------------------------------------------------------

    def subscription(self, subject: str) -> Subscription | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(models.subscriptions).where(
                    models.subscriptions.c.citizen == self.citizen(subject)
                )
            ).first()
        if row is None:
            return None
        return Subscription(row.address, row.language, row.mode, row.confirmed_at is not None)

    async def subscribe(
        self, citizen: SignedIn, *, address: str, mode: str, language: str
    ) -> Saved:
        """Keep the citizen's choice, send a new address its link, and watch the citizen at
        every register."""
        key, now = self.citizen(citizen.subject), self._clock()
        token = await asyncio.to_thread(self._keep, key, address, mode, language, now)
        confirmation = None
        if token is not None:
            confirmation = await self._send_link(address, language, token, now)
        view = self._portal.trust.view()
        providers = self._portal.providers(view)
        held = await asyncio.to_thread(self._watched, key)
        missing = [p for p in providers if p not in held]
        results = await asyncio.gather(
            *(self._register(citizen, key, p) for p in missing), return_exceptions=True
        )
        unreachable = []
        for provider, result in zip(missing, results, strict=True):
            if isinstance(result, BaseException):
                reason = result.message if isinstance(result, Error) else type(result).__name__
                log.warning("portal.watch_failed", provider=provider, reason=reason)
                unreachable.append(self._portal.provider_name(view, provider))
        log.info("portal.notifications_on", mode=mode, registers=len(providers))
        return Saved(unreachable, confirmation)

    def _keep(self, key: str, address: str, mode: str, language: str, now: datetime) -> str | None:
        """Store the choice; the token of a new link when the address still needs confirming."""
        table = models.subscriptions
        digest = next_digest(now, self._settings.digest_hour) if mode == "daily" else None
        token: str | None = secrets.token_urlsafe(32)
        # The link works once it was sent (:meth:`_link_sent`).
        link = {"confirm_digest": _digest(str(token)), "confirm_sent_at": None}
        with self._engine.begin() as connection:
            found = connection.execute(
                select(table.c.address, table.c.confirmed_at, table.c.confirm_sent_at).where(
                    table.c.citizen == key
                )
            ).first()
            values = {"address": address, "language": language, "mode": mode}
            if found is None:
                connection.execute(
                    insert(table).values(
                        citizen=key, created_at=now, digest_due=digest, **values, **link
                    )
                )
            elif (
                found.address == address
                and found.confirmed_at is None
                and found.confirm_sent_at is not None
                and found.confirm_sent_at > now - RESEND_AFTER
            ):
                token = None  # its link went out moments ago: no e-mail on every click
                connection.execute(
                    update(table).where(table.c.citizen == key).values(digest_due=digest, **values)
                )
            elif found.address != address or found.confirmed_at is None:
                connection.execute(
                    update(table)
                    .where(table.c.citizen == key)
                    .values(digest_due=digest, confirmed_at=None, **values, **link)
                )
            else:
                token = None  # the same address, confirmed already
                connection.execute(
                    update(table).where(table.c.citizen == key).values(digest_due=digest, **values)
                )
            # What waits goes out on the new schedule.
            connection.execute(
                update(models.notices)
                .where(models.notices.c.citizen == key, models.notices.c.sent_at.is_(None))
                .values(due_at=digest or now)
            )
        return token

    async def _send_link(self, address: str, language: str, token: str, now: datetime) -> str:
        """E-mail ``address`` the link that confirms it: "sent", or "failed" (the citizen can
        save again later for a new link)."""
        link = f"{self._portal.settings.public_url.rstrip('/')}/notifications/confirm?token={token}"
        message = letters.confirmation(
            link, to=address, language=language, head=self._head, at=now, within=CONFIRM_WITHIN
        )
        try:
            await self._mailer.send(message)
        except Error as error:
            log.warning("portal.confirmation_not_sent", reason=error.message, detail=error.detail)
            return "failed"
        await asyncio.to_thread(self._link_sent, token, now)
        return "sent"

    def _link_sent(self, token: str, now: datetime) -> None:
        table = models.subscriptions
        with self._engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.confirm_digest == _digest(token))
                .values(confirm_sent_at=now)
            )

    def confirm(self, token: str) -> bool:
        """Confirm the address whose link carries ``token``; False for an unknown, used or
        expired link."""
        table, now = models.subscriptions, self._clock()
        with self._engine.begin() as connection:
            confirmed = connection.execute(
                update(table)
                .where(
                    table.c.confirm_digest == _digest(token),
                    table.c.confirm_sent_at > now - CONFIRM_WITHIN,
                )
                .values(confirmed_at=now, confirm_digest=None)
            )
            done = bool(getattr(confirmed, "rowcount", 0))
        if done:
            log.info("portal.address_confirmed")
        return done

    def _watched(self, key: str) -> set[str]:
        with self._engine.connect() as connection:
            return set(
                connection.execute(
                    select(models.watches.c.provider).where(models.watches.c.citizen == key)
                ).scalars()
            )

    async def _register(self, citizen: SignedIn, key: str, provider: str) -> None:
        watch = secrets.token_urlsafe(24)
        answer = await self._ask(
            "POST",
            provider,
            "/v1/watches",
            params={"userCode": citizen.subject, "watch": watch},
            headers={"X-Road-UserId": citizen.subject, "X-Exchange-Identity": citizen.id_token},
        )
        await asyncio.to_thread(self._registered, key, provider, watch, str(answer["cursor"]))

    def _registered(self, key: str, provider: str, watch: str, cursor: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                insert(models.watches).values(id=watch, provider=provider, citizen=key)
            )
            known = connection.execute(
                select(models.cursors.c.provider).where(models.cursors.c.provider == provider)
            ).first()
            if known is None:  # read this register from here on
                connection.execute(insert(models.cursors).values(provider=provider, cursor=cursor))

    async def unsubscribe(self, citizen: SignedIn) -> None:
        key = self.citizen(citizen.subject)
        await asyncio.to_thread(self._forget, key)
        log.info("portal.notifications_off")
        await self._cancel_orphans()

    def _forget(self, key: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(models.notices).where(models.notices.c.citizen == key))
            connection.execute(
                delete(models.subscriptions).where(models.subscriptions.c.citizen == key)
            )
            connection.execute(
                update(models.watches).where(models.watches.c.citizen == key).values(citizen=None)
            )

    async def _cancel_orphans(self) -> None:
        with self._engine.connect() as connection:
            orphans = connection.execute(
                select(models.watches.c.id, models.watches.c.provider).where(
                    models.watches.c.citizen.is_(None)
                )
            ).all()
        for watch, provider in orphans:
            try:
                await self._ask("DELETE", provider, "/v1/watches", params={"watch": watch})
            except Error as error:
                log.info("portal.watch_cancel_later", provider=provider, reason=error.message)
                continue
            with self._engine.begin() as connection:
                connection.execute(delete(models.watches).where(models.watches.c.id == watch))

    # -- following the registers -----------------------------------------------------------

    async def poll(self) -> int:
        """Ask every register once (and again while it has more); the releases put in the
        outbox."""
        await self._cancel_orphans()
        with self._engine.connect() as connection:
            held: dict[str, str] = {
                str(p): str(c) for p, c in connection.execute(select(models.cursors))
            }
        counts = await asyncio.gather(
            *(self._follow(p, c) for p, c in held.items()), return_exceptions=True
        )
        added = 0
        for provider, count in zip(held, counts, strict=True):
            if isinstance(count, BaseException):
                reason = count.message if isinstance(count, Error) else type(count).__name__
                log.warning("portal.events_unavailable", provider=provider, reason=reason)
            else:
                added += count
        return added

    async def _follow(self, provider: str, cursor: str) -> int:
        added = 0
        for _ in range(20):  # bounded: the rest on the next poll
            answer = await self._ask("GET", provider, "/v1/events", params={"cursor": cursor})
            events = [e for e in answer.get("events", []) if isinstance(e, dict)]
            following = str(answer["cursor"])
            added += await asyncio.to_thread(self._store, provider, cursor, following, events)
            cursor = following
            if not answer.get("more"):
                break
        return added

    def _store(self, provider: str, was: str, now_at: str, events: list[dict[str, Any]]) -> int:
        """Put ``events`` in the outbox and move the cursor, in one transaction."""
        now, added = self._clock(), 0
        table = models.notices
        with self._engine.begin() as connection:
            moved = connection.execute(
                update(models.cursors)
                .where(models.cursors.c.provider == provider, models.cursors.c.cursor == was)
                .values(cursor=now_at)
            )
            if getattr(moved, "rowcount", 1) == 0:
                return 0  # another pass (or replica) read this page already
            watches = {str(e.get("watch")) for e in events}
            owners = {
                row.id: row
                for row in connection.execute(
                    select(
                        models.watches.c.id,
                        models.subscriptions.c.citizen,
                        models.subscriptions.c.mode,
                        models.subscriptions.c.digest_due,
                    )
                    .join(
                        models.subscriptions,
                        models.subscriptions.c.citizen == models.watches.c.citizen,
                    )
                    .where(models.watches.c.id.in_(watches), models.watches.c.provider == provider)
                )
            }
            for event in events:
                owner = owners.get(str(event.get("watch")))
                if owner is None:
                    continue  # opted out since, or not ours
                chain, seq = str(event.get("chain")), int(event.get("seq", -1))
                key = and_(table.c.provider == provider, table.c.chain == chain, table.c.seq == seq)
                if connection.execute(select(table.c.seq).where(key)).first() is not None:
                    continue  # told already
                kept = {k: event.get(k) for k in letters.EVENT_FIELDS}
                connection.execute(
                    insert(table).values(
                        provider=provider,
                        chain=chain,
                        seq=seq,
                        citizen=owner.citizen,
                        event=json.dumps(kept),
                        received_at=now,
                        due_at=owner.digest_due if owner.mode == "daily" else now,
                        next_try=now,
                        attempts=0,
                    )
                )
                added += 1
        return added

    async def _ask(
        self,
        method: str,
        provider: str,
        path: str,
        *,
        params: dict[str, str],
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A question to ``provider``'s usage service through the portal's gateway."""
        with mapped("the portal's gateway"):
            response = await self._portal.http.request(
                method,
                f"/r1/{provider}/usage{path}",
                params=params,
                headers={"X-Road-Client": self._portal.settings.client, **(headers or {})},
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else None
            raise ServiceFailed(str(message or f"HTTP {response.status_code}"))
        return body

    # -- sending ---------------------------------------------------------------------------

    async def send_due(self) -> int:
        """Send what is due; the number of e-mails the SMTP server took."""
        now = self._clock()
        sent = 0
        for subscription, rows in await asyncio.to_thread(self._due, now):
            releases = [self._release(row, subscription.language) for row in rows]
            if subscription.mode == "daily":
                messages = [(rows, letters.digest(releases, **self._to(subscription, now)))]
            else:
                messages = [
                    ([row], letters.each(release, **self._to(subscription, now)))
                    for row, release in zip(rows, releases, strict=True)
                ]
            for done, message in messages:
                try:
                    await self._mailer.send(message)
                except Error as error:
                    log.warning("portal.notice_not_sent", reason=error.message, detail=error.detail)
                    await asyncio.to_thread(self._failed, done, now)
                    continue
                await asyncio.to_thread(self._sent, done, subscription, now)
                sent += 1
        await asyncio.to_thread(self._prune, now)
        return sent

    def _to(self, subscription: Subscription, now: datetime) -> dict[str, Any]:
        return {
            "to": subscription.address,
            "language": subscription.language,
            "head": self._head,
            "at": now,
        }

    def _due(self, now: datetime) -> list[tuple[Subscription, list[Any]]]:
        table, people = models.notices, models.subscriptions
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(table, people.c.address, people.c.language, people.c.mode)
                .join(people, people.c.citizen == table.c.citizen)
                .where(
                    table.c.sent_at.is_(None),
                    table.c.due_at <= now,
                    table.c.next_try <= now,
                    people.c.confirmed_at.is_not(None),  # what waits goes once it is confirmed
                )
                .order_by(table.c.received_at, table.c.chain, table.c.seq)
                .limit(BATCH)
            ).all()
        grouped: dict[str, tuple[Subscription, list[Any]]] = {}
        for row in rows:
            entry = grouped.setdefault(
                row.citizen, (Subscription(row.address, row.language, row.mode), [])
            )
            entry[1].append(row)
        return list(grouped.values())

    def _release(self, row: Any, language: str) -> letters.Release:
        event = json.loads(row.event)
        view = self._portal.trust.view()
        who = str(event.get("receiverName") or event.get("receiverCode") or "")
        if event.get("receiverSystem"):
            who = f"{who} ({event['receiverSystem']})"
        return letters.Release(
            provider=row.provider,
            chain=row.chain,
            seq=row.seq,
            logtime=str(event.get("logtime")),
            register=self._portal.provider_name(view, row.provider),
            who=who,
            what=str(event.get("action") or event.get("service") or ""),
            why=self._why(event, language),
            legal_basis=event.get("legalBasis"),
        )

    def _why(self, event: dict[str, Any], language: str) -> str | None:
        """The purpose in words where it is one of this portal's procedures, else its code."""
        purpose = event.get("purpose")
        if not purpose:
            return None
        client = self._portal.settings.client.split("/")
        mine = event.get("receiverCode") == client[2] and event.get("receiverSystem") == client[3]
        for procedure in self._portal.settings.procedures if mine else []:
            if procedure.purpose == purpose:
                return localised(procedure.purpose_text, language)
        return str(purpose)

    def _sent(self, rows: list[Any], subscription: Subscription, now: datetime) -> None:
        table = models.notices
        with self._engine.begin() as connection:
            for row in rows:
                connection.execute(
                    update(table)
                    .where(*_the_notice(row))
                    .values(sent_at=now, attempts=row.attempts + 1)
                )
            if subscription.mode == "daily":
                connection.execute(
                    update(models.subscriptions)
                    .where(models.subscriptions.c.citizen == rows[0].citizen)
                    .values(digest_due=next_digest(now, self._settings.digest_hour))
                )

    def _failed(self, rows: list[Any], now: datetime) -> None:
        table = models.notices
        with self._engine.begin() as connection:
            for row in rows:
                connection.execute(
                    update(table)
                    .where(*_the_notice(row))
                    .values(attempts=row.attempts + 1, next_try=now + backoff(row.attempts))
                )

    def _prune(self, now: datetime) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                delete(models.notices).where(models.notices.c.sent_at < now - KEEP_SENT)
            )

    # -- the background job ----------------------------------------------------------------

    async def run(self) -> None:
        """Follow the registers and send, every ``poll_interval`` seconds, until cancelled."""
        while True:
            try:
                await self.poll()
                await self.send_due()
            except Exception:  # the job goes on; the next pass retries
                log.exception("portal.notices_pass_failed")
            await asyncio.sleep(self._settings.poll_interval)
