// Render the equations of every page with the vendored KaTeX (no CDN needed).
// Markdown pages: pymdownx.arithmatex (generic mode) leaves \( \) and \[ \] spans.
// Lesson pages: the notebooks' own $...$ and $$...$$.
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  });
});
