// JupyterLab 4 extension of llmroof_widgets (app-level UI only; the widgets themselves are
// anywidget/bqplot and render without this extension):
//   - Launcher card "LLM Roofline" and the command "New roofline notebook": a new notebook whose
//     first cell builds a dashboard with the settings' model, device and weight bits, then runs it;
//   - command "Insert roofline dashboard cell" (into the active notebook);
//   - command "Open llmroof_widgets documentation" (Help menu, palette);
//   - settings (schema/plugin.json): default device, weight bits and model;
//   - a kernel-free, read-only viewer for saved analyses (*.llmroof.json, Result.save()).
import { ILayoutRestorer } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { ABCWidgetFactory, DocumentWidget } from '@jupyterlab/docregistry';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import iconSvg from '../style/icon.svg';
import readme from '../../README.md';
import { DEFAULTS, PLUGIN_ID, dashboardCode, normalizeSettings } from './settings.js';
import { AnalysisViewer } from './viewer.js';

/**
 * Where "Open llmroof_widgets documentation" goes. '' opens the README bundled at build time in a
 * Lab tab (works offline); set it to the project's public README URL to open that instead.
 */
export const DOCS_URL = '';

export const COMMANDS = Object.freeze({
  newNotebook: 'llmroof:new-notebook',
  insertCell: 'llmroof:insert-dashboard-cell',
  openDocs: 'llmroof:open-docs'
});

export const FILE_TYPE = 'llmroof-analysis';
export const FACTORY = 'LLM Roofline Analysis';
const CATEGORY = 'LLM Roofline';

export const rooflineIcon = new LabIcon({ name: 'llmroof-widgets:roofline', svgstr: iconSvg });

/** Factory of the read-only analysis viewer (no kernel). */
class AnalysisFactory extends ABCWidgetFactory {
  createNewWidget(context) {
    const content = new AnalysisViewer(context);
    const widget = new DocumentWidget({ content, context });
    widget.addClass('lr-doc-document');
    widget.title.icon = rooflineIcon;
    return widget;
  }
}

function newCellId() {
  const rnd = globalThis.crypto && crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  return rnd.replace(/[^a-zA-Z0-9-]/g, '').slice(0, 36);
}

/** Docs tab: the README bundled at build time, rendered by Lab's (sanitizing) markdown renderer. */
function createDocsWidget(rendermime) {
  let content;
  if (rendermime) {
    const renderer = rendermime.createRenderer('text/markdown');
    void renderer.renderModel(new MimeModel({ data: { 'text/markdown': readme } }));
    content = renderer;
  } else {
    content = new Widget();
    const pre = document.createElement('pre');
    pre.textContent = readme;
    content.node.appendChild(pre);
  }
  content.addClass('lr-doc-readme');
  const widget = new MainAreaWidget({ content });
  widget.id = 'llmroof-widgets-docs';
  widget.title.label = 'llmroof_widgets docs';
  widget.title.caption = 'llmroof_widgets README (bundled with the extension)';
  widget.title.icon = rooflineIcon;
  widget.title.closable = true;
  return widget;
}

const plugin = {
  id: PLUGIN_ID,
  description: 'Launcher card, palette commands, settings and a saved-analysis viewer for llmroof_widgets.',
  autoStart: true,
  optional: [ILauncher, ICommandPalette, INotebookTracker, ISettingRegistry, ILayoutRestorer, IRenderMimeRegistry],
  activate: (app, launcher, palette, notebooks, settingRegistry, restorer, rendermime) => {
    const { commands, shell, serviceManager } = app;

    // -- settings -------------------------------------------------------------------------------
    let settings = { ...DEFAULTS };
    const settingsReady = settingRegistry
      ? settingRegistry
          .load(PLUGIN_ID)
          .then(s => {
            const update = () => {
              settings = normalizeSettings(s.composite);
            };
            update();
            s.changed.connect(update);
          })
          .catch(reason => console.warn(`${PLUGIN_ID}: settings could not be loaded; using defaults`, reason))
      : Promise.resolve();

    async function defaultKernel() {
      await serviceManager.kernelspecs.ready;
      const specs = serviceManager.kernelspecs.specs;
      const name = (specs && specs.default) || 'python3';
      const spec = (specs && specs.kernelspecs && specs.kernelspecs[name]) || {};
      return { name, display_name: spec.display_name || name, language: spec.language || 'python' };
    }

    // -- New roofline notebook / Launcher card ---------------------------------------------------
    commands.addCommand(COMMANDS.newNotebook, {
      label: args => (args.isLauncher ? 'LLM Roofline' : args.isMenu ? 'Roofline Notebook' : 'New roofline notebook'),
      caption:
        'A new notebook with a roofline dashboard cell (model, device and weight bits from ' +
        'Settings › LLM Roofline), run on the default kernel',
      icon: rooflineIcon,
      execute: async args => {
        await settingsReady;
        const kernel = await defaultKernel();
        const cwd = typeof args.cwd === 'string' ? args.cwd : '';
        const created = await commands.execute('docmanager:new-untitled', { path: cwd, type: 'notebook' });
        // the dashboard cell is written with the file, so the notebook is complete on disk
        await serviceManager.contents.save(created.path, {
          type: 'notebook',
          format: 'json',
          content: {
            cells: [
              {
                id: newCellId(),
                cell_type: 'code',
                execution_count: null,
                metadata: {},
                outputs: [],
                source: dashboardCode(settings)
              }
            ],
            metadata: {
              kernelspec: { name: kernel.name, display_name: kernel.display_name, language: kernel.language },
              language_info: { name: kernel.language }
            },
            nbformat: 4,
            nbformat_minor: 5
          }
        });
        const panel = await commands.execute('docmanager:open', {
          path: created.path,
          factory: 'Notebook',
          kernel: { name: kernel.name }
        });
        if (!panel || !panel.content || !panel.sessionContext) {
          return panel; // e.g. Notebook 7 opens it in another browser tab
        }
        await panel.context.ready;
        shell.activateById(panel.id);
        if (args.run !== false) {
          await panel.sessionContext.ready;
          await NotebookActions.runAll(panel.content, panel.sessionContext);
        }
        return panel;
      }
    });

    // -- Insert roofline dashboard cell -----------------------------------------------------------
    const currentNotebook = () => (notebooks ? notebooks.currentWidget : null);
    commands.addCommand(COMMANDS.insertCell, {
      label: 'Insert roofline dashboard cell',
      caption: 'Insert a cell that builds a roofline dashboard (settings: LLM Roofline) below the active cell',
      icon: rooflineIcon,
      isEnabled: () => currentNotebook() !== null,
      execute: async args => {
        const panel = currentNotebook();
        if (!panel) {
          return null;
        }
        await settingsReady;
        const notebook = panel.content;
        const code = dashboardCode(settings);
        const active = notebook.activeCell;
        const reuse =
          active && active.model.type === 'code' && active.model.sharedModel.getSource().trim() === '';
        if (!reuse) {
          NotebookActions.insertBelow(notebook);
          if (notebook.activeCell && notebook.activeCell.model.type !== 'code') {
            NotebookActions.changeCellType(notebook, 'code');
          }
        }
        notebook.activeCell.model.sharedModel.setSource(code);
        shell.activateById(panel.id);
        if (args.run) {
          await panel.sessionContext.ready;
          await NotebookActions.run(notebook, panel.sessionContext);
        }
        return notebook.activeCellIndex;
      }
    });

    // -- Documentation ----------------------------------------------------------------------------
    let docs = null;
    commands.addCommand(COMMANDS.openDocs, {
      label: 'Open llmroof_widgets documentation',
      caption: DOCS_URL ? `Open ${DOCS_URL}` : 'Open the llmroof_widgets README in a tab',
      icon: rooflineIcon,
      execute: () => {
        if (DOCS_URL) {
          window.open(DOCS_URL, '_blank', 'noopener');
          return null;
        }
        if (!docs || docs.isDisposed) {
          docs = createDocsWidget(rendermime);
          shell.add(docs, 'main');
        }
        shell.activateById(docs.id);
        return docs;
      }
    });

    if (palette) {
      for (const command of [COMMANDS.newNotebook, COMMANDS.insertCell, COMMANDS.openDocs]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
    if (launcher) {
      // cards of the Notebook category show kernelIconUrl (an <img>), not the command's icon
      const kernelIconUrl = `data:image/svg+xml,${encodeURIComponent(iconSvg)}`;
      launcher.add({ command: COMMANDS.newNotebook, args: { isLauncher: true }, category: 'Notebook', rank: 50, kernelIconUrl });
    }

    // -- Saved analyses (*.llmroof.json): file type + read-only viewer ------------------------------
    app.docRegistry.addFileType({
      name: FILE_TYPE,
      displayName: 'LLM roofline analysis',
      extensions: ['.llmroof.json'],
      pattern: '^.*\\.llmroof\\.json$',
      mimeTypes: ['application/json'],
      contentType: 'file',
      fileFormat: 'text',
      icon: rooflineIcon
    });
    const factory = new AnalysisFactory({
      name: FACTORY,
      label: 'LLM roofline analysis',
      fileTypes: [FILE_TYPE],
      defaultFor: [FILE_TYPE],
      defaultRendered: [FILE_TYPE],
      readOnly: true,
      modelName: 'text',
      preferKernel: false,
      canStartKernel: false
    });
    app.docRegistry.addWidgetFactory(factory);
    const tracker = new WidgetTracker({ namespace: 'llmroof-analysis' });
    factory.widgetCreated.connect((sender, widget) => {
      widget.context.pathChanged.connect(() => void tracker.save(widget));
      void tracker.add(widget);
    });
    if (restorer) {
      void restorer.restore(tracker, {
        command: 'docmanager:open',
        args: widget => ({ path: widget.context.path, factory: FACTORY }),
        name: widget => widget.context.path
      });
    }
  }
};

export default plugin;
