/**
 * The pages between an action and its result: the confirmation that shows
 * what will happen (and re-posts the same fields with `confirmed`), the
 * result, and errors.
 */
import { type Html, html } from "./html.ts"
import { page, type PageContext, postForm } from "./layout.ts"

export const confirmPage = (
  context: PageContext,
  options: {
    readonly title: string
    readonly question: Html | string
    readonly action: string
    readonly fields: ReadonlyArray<readonly [string, string]>
    readonly back: string
  }
): Html =>
  page(
    context,
    { title: options.title, current: "" },
    html`<p class="question">${options.question}</p>
<div class="actions">${
      postForm(
        context,
        options.action,
        [...options.fields, ["confirmed", "yes"]],
        html`<button type="submit" class="danger" id="confirm">Confirm</button>`
      )
    } <a href="${options.back}">Cancel</a></div>`
  )

export const resultPage = (context: PageContext, title: string, message: string, back: string): Html =>
  page(
    context,
    { title, current: "" },
    html`<p class="result" role="status" id="result">${message}</p><p><a href="${back}">Back</a></p>`
  )

export const errorPage = (context: PageContext, title: string, message: string): Html =>
  page(context, { title, current: "" }, html`<p class="error" role="alert">${message}</p><p><a href="${context.base}/">Queues</a></p>`)
